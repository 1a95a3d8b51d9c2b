"""Rotates Cekura API keys stored in AWS Secrets Manager."""

__version__ = "0.1.0"
