"""People, roles and the audit trail: Airflow's FAB auth manager with the spec's users
(`auth`), `airscale users`, `airscale creds --user` and `airscale audit`."""
