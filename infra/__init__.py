"""Deployment and local stand-ins for the Cekura key rotator."""
