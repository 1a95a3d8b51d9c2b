"""Tests for the Cekura key rotator."""
