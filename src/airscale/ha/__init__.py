"""High availability: giving a dead worker's broker messages back, and (with `ha.database`)
the PostgreSQL primary + standby managed by Patroni."""
