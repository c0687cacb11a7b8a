"""Assignment a7_ali: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
