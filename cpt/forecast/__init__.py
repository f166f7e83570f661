"""Loss forecasts, pure: LR-area scaling laws fitted to logged curves predict untried schedules."""
