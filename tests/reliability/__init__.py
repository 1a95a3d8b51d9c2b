"""Reliability and security suite: fault matrix, crashes, random sequences, bad input (issue 4)."""
