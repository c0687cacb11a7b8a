"""Assignment a3_vae: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
