"""Rotates Cekura API keys stored in AWS Secrets Manager."""

__version__ = "0.3.0"
