"""Backup and restore: one copy engine over the `ObjectStore` interface.

`plan` decides what to copy, `copier` moves and verifies one object, `run` schedules,
budgets, leases and reports; `config`, `index`, `report`, `stream` and `lease` serve them.
`restore` is the same run the other way, with `restore_plan`'s planner.
"""

from crosscloud.backup.run import HTTP_TIME_BUDGET_S, REPORT_LOGGER, Backup, run_configured

__all__ = ["HTTP_TIME_BUDGET_S", "REPORT_LOGGER", "Backup", "run_configured"]
