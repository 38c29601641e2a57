"""Backup and restore: one copy engine over the `ObjectStore` interface.

`plan` decides what to copy, `copier` moves and verifies one object, `run` schedules,
budgets, leases and reports; `config`, `index`, `report`, `stream` and `lease` serve them.
`restore` is the same run the other way, with `restore_plan`'s planner.
Fan-out (`BACKUP_FANOUT=queue`): `fanout` plans a run into key-range shards on a Storage
queue (`planning`: in steps that continue on the queue), `shards` copies one with the same
run loop (`run.CopyRun`), `runstate` keeps the run's state and writes its report; `range`
is the key range they share.
"""

from crosscloud.backup.run import HTTP_TIME_BUDGET_S, REPORT_LOGGER, Backup, run_configured

__all__ = ["HTTP_TIME_BUDGET_S", "REPORT_LOGGER", "Backup", "run_configured"]
