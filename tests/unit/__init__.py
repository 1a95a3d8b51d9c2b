"""Fast unit tests: no AWS, no network beyond 127.0.0.1."""
