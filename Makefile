# The two commands: `make demo` and `make test`. Both set up what they need first.
SPEC ?= examples/airscale.yaml
AIRSCALE = .venv/bin/airscale

.PHONY: bootstrap demo test test-drills test-long unit integration bench bench-autoscale upgrade-check soak down clean

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	@scripts/demo $(SPEC)

# Two pytest-xdist workers: each integration kind's tests (one shared cluster) stay on one
# worker, the longest kinds first, so two clusters run side by side (tests/integration/conftest.py).
TEST_WORKERS ?= 2
test: bootstrap
	.venv/bin/python -m pytest tests -q -m "not drill and not long" --durations=25 \
	  -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# The long failure drills (a database away 90 s, a scheduler hung 120 s, etcd, the whole DCS
# and the Redis primary hung): about 10 more minutes; RELIABILITY.md records their runs.
test-drills: bootstrap
	.venv/bin/python -m pytest tests/integration -q -m drill

# The long end-to-end runs: `up` applying six spec edits with rolling restarts while 100 tasks
# run, and `airscale bench --quick` on two clusters (about 10 more minutes).
test-long: bootstrap
	.venv/bin/python -m pytest tests/integration -q -m long

unit: bootstrap
	.venv/bin/python -m pytest tests/unit -q

integration: bootstrap
	.venv/bin/python -m pytest tests/integration -q

# Stock Airflow vs airscale's plan, same machine, same run (about 15 minutes; ports 29800/29900).
bench: bootstrap
	$(AIRSCALE) bench --rounds 3 --out-dir bench-results

# The autoscaler against static workers and the Helm chart's KEDA formula on five burst
# shapes (about 55 minutes; BENCH_ARGS="--shapes burst,ramp" for fewer).
bench-autoscale: bootstrap
	.venv/bin/python -m airscale.bench.autoscale_trace --out bench-results $(BENCH_ARGS)

# `airscale upgrade` from an earlier Airflow 3 release (default 3.2.2; FROM=3.1.8 for another)
# to the pinned one while a workload runs: builds .upgrade-check/venv-FROM once (about 3 min),
# then about 10 minutes; ports 34000-34099. RELIABILITY.md records its run.
FROM ?= 3.2.2
upgrade-check: bootstrap
	scripts/upgrade_check $(FROM)

# An hour of the compressed 50k-tasks-a-day profile with faults at random (a cluster of its own,
# ports 31000-31099); e.g. make soak SOAK_ARGS="--minutes 20 --seed 7 --profile ha".
SOAK_ARGS ?= --minutes 60 --seed 1
soak: bootstrap
	$(AIRSCALE) soak $(SOAK_ARGS) --out-dir soak-results

down:
	$(AIRSCALE) down -s $(SPEC)

clean:
	-$(AIRSCALE) down --purge -s $(SPEC)
