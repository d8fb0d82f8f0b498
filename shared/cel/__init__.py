"""Tenant-written CEL, evaluated with limits in a worker process (sandbox.py)."""
