# The two commands of the README. Both set up what a fresh machine lacks (cached after the first run).
.PHONY: demo test crds classifier

demo:  ## the local demo: control plane, Prometheus, simulated fleet, operator, router, workload
	bash hack/demo.sh $(ARGS)

test:  ## every test, lint and type check
	bash hack/test.sh

crds:  ## regenerate crds/ from the pydantic models
	.venv/bin/python -m zeta_operator.api.crdgen

classifier:  ## retrain the request classifier from dev/corpus and rewrite docs/classifier.md
	.venv/bin/python -m zeta_dev.classifier.train
	.venv/bin/python -m zeta_dev.classifier.evaluate
