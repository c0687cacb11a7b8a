"""Assignment a2_autoregressive: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
