"""One folder per assignment: checks.py (hidden checks), students.py and alternative.py (simulated students)."""
