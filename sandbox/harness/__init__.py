"""The grading harness that runs inside the sandbox: tests_side.py in H, student_side.py in S."""
