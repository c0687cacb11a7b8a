"""Assignment a6_gans: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
