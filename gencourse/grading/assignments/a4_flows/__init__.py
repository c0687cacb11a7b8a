"""Assignment a4_flows: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
