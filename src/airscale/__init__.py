"""airscale: run Apache Airflow 3 at enterprise scale from one spec file."""

__version__ = "0.1.0"
