# Entry points. The two a newcomer needs: `make up` (deploy the default stack on Docker)
# and `make test` (the whole suite, as CI runs it). See README.md.
.PHONY: up down preview check diagrams test test-fast lint bench bench-deploy lock

up:
	scripts/lab up dev

down:
	scripts/lab down dev

preview:
	scripts/lab preview $(or $(STACK),dev)

# Is the deployed stack's calculator answering, service by service? (STACK=dev by default)
check:
	scripts/lab check $(or $(STACK),dev)

# The README's topology pictures, drawn from the model (a test fails when they are stale).
diagrams:
	scripts/lab diagram alice --no-outputs --out docs/diagrams --name single
	scripts/lab diagram bob --no-outputs --out docs/diagrams --name client

test:
	scripts/test-all

# The layers that need no daemon: config, graph (mocks), calculator unit and e2e tests.
test-fast:
	scripts/setup-venv
	.venv/bin/pytest -m "not docker and not engine and not testcloud and not browser and not boot"

lint:
	scripts/setup-venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	# apps/ runs on the VM's python3 from 3.8 on; this mypy checks no older target than 3.10.
	.venv/bin/mypy --python-version 3.10 apps/calculator

bench:
	scripts/setup-venv
	.venv/bin/python benchmarks/calculator_bench.py

# Deploys (alice, bob on the test cloud; dev on Docker) against the floor of the same resources
# made by the APIs directly, and where Pulumi's time goes. Needs the test cloud and the Docker
# engine running; about 15 minutes. BENCH_ARGS="--rounds 1 --stacks bob --json out.json"
bench-deploy:
	scripts/setup-venv
	.venv/bin/python benchmarks/deploy_bench.py $(BENCH_ARGS)

lock:
	rm -rf /tmp/calculator-lab-lock && python3 -m venv /tmp/calculator-lab-lock
	/tmp/calculator-lab-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Generated from requirements.in by 'make lock' (pip freeze of a clean venv). Do not edit."; \
	  /tmp/calculator-lab-lock/bin/pip freeze | sort; } > requirements.lock
