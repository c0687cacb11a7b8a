"""Assignment a8_diffusion: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
