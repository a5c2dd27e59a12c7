"""The worker tier: the pump that turns stored notifications into RQ jobs, and the jobs themselves."""
