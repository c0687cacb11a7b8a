"""Assignment a1_maximum_likelihood: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
