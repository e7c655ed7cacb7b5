"""Workloads: trigger DAG runs through Airflow's REST API and follow them to the end."""
