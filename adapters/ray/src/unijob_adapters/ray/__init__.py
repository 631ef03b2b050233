"""unijob adapter for Ray (entry point ``ray``): the Ray Jobs API and a placement-group gang launcher."""
