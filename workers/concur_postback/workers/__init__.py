"""The worker tier: RQ jobs that are sessions taking stored notifications as they arrive, and what
they do with each one."""
