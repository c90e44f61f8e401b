"""Autograder for deep-learning homeworks."""
