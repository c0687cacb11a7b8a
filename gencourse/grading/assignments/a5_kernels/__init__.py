"""Assignment a5_kernels: its hidden checks (checks.py) and simulated students (students.py, alternative.py)."""
