# Two entry points: `make serve` (run the service with the bundled models) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# SERVICE_* variables in the environment win over these defaults.
BUNDLE ?= models/en-de
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-quick lint pytest tools model model-de model-fr model-es ablation \
	bench bench-ab bench-step bench-models bench-glossary bench-places bench-engine \
	bench-opennmt opennmt-fixtures docker-check docs mutation clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The service needs no torch: a fresh `make serve` installs only the service extra.
$(VENV)/.service: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[service]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[service,export,dev]'
	touch $@ $(VENV)/.service

# Serves every model in models/ (SERVICE_MODEL_REPOSITORY), or only SERVICE_BUNDLE_DIR if set.
serve: $(VENV)/.service
	SERVICE_HOST="$${SERVICE_HOST:-$(HOST)}" SERVICE_PORT="$${SERVICE_PORT:-$(PORT)}" \
		$(PY) -m service

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check service model_export bench tests scripts
	$(VENV)/bin/mypy

# The tools the tests drive: a pinned kubectl into .venv/bin (Kubernetes manifests), and
# Debian's chromium (browser tests), haproxy (rolling restart), prometheus (dashboard and
# rules) and gettext (msgfmt --check on pre-translated catalogs). A test whose tool cannot be
# had skips saying why; under CI (CI=true) any skip fails the run.
tools: $(VENV)/.dev
	sh scripts/install-kubectl.sh $(VENV)
	sh scripts/install-debian.sh chromium /usr/bin/chromium
	sh scripts/install-debian.sh haproxy /usr/sbin/haproxy
	sh scripts/install-debian.sh prometheus /usr/bin/prometheus
	sh scripts/install-debian.sh gettext /usr/bin/msgfmt

# .venv/bin first on PATH: the pinned kubectl wins over a system one.
pytest: $(VENV)/.dev tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -rs -p no:cacheprovider

test: lint pytest

# Same suite with a smaller fuzzing budget (100 generated requests instead of 1000).
test-quick: $(VENV)/.dev tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" FUZZ_CASES=100 $(PY) -m pytest -q -rs -p no:cacheprovider -x

# Reproduce a shipped model from scratch: `make model` (en-de, the default), `make model
# LANG=fr`, `make model LANG=es`. LANG counts only when given on make's command line (the
# shell's locale variable of the same name is ignored) and is not passed on to the commands.
ifeq ($(origin LANG),command line)
MODEL_LANG := $(LANG)
unexport LANG
else
MODEL_LANG := de
endif
model: model-$(MODEL_LANG)

# en-de: the recipe of en-fr and en-es (the German catalogs of train.txt, then games.txt,
# then Ding's dictionary): 3,200 updates with the games' pairs added twice more and
# LibreOffice's once more (85 min on 2 cores), then 1,000 updates of fine-tuning with
# LibreOffice's pairs added 8 more times and the games' 6 more (25 min), validated every
# 400/500 updates; then export, quantize, evaluate and ship int8 with a vocabulary
# shortlist; then the bundle it replaced (models/en-de at PREVIOUS_DE) is scored as served
# on its evaluation sets, for the card. work/bundle-full keeps both variants (benchmarks).
RUN := work/run-en-de
TUNED := $(RUN)-lo
PREVIOUS_DE := 854ffc2
model-de: $(VENV)/.dev
	$(PY) -m model_export corpus --lang de --data work/data
	$(PY) -m model_export train --data work/data --run $(RUN) --max-steps 3200 --batch-tokens 4000 \
		--eval-every 400 --dev-limit 1500 --oversample train-games.tsv:2 \
		--oversample train-libreoffice-l10n-de.tsv:1
	$(PY) -m model_export train --data work/data --run $(TUNED) --init-from $(RUN) \
		--oversample train-libreoffice-l10n-de.tsv:8 --oversample train-games.tsv:6 --lr 5e-4 \
		--max-steps 1000 --batch-tokens 4000 --eval-every 500 --dev-limit 1500
	$(PY) -m model_export bundle --data work/data --run $(TUNED) --target-lang de \
		--out work/bundle-full
	$(PY) -m model_export ship --bundle work/bundle-full --variants int8 --out work/bundle-de
	$(PY) -m model_export shortlist --bundle work/bundle-de --data work/data
	rm -rf work/previous-de && mkdir -p work/previous-de
	git archive $(PREVIOUS_DE) models/en-de | tar -x -C work/previous-de
	$(PY) -m model_export compare --bundle work/bundle-de --previous work/previous-de/models/en-de \
		--data work/data
	rm -rf $(BUNDLE) && cp -r work/bundle-de $(BUNDLE)

# en-fr: the French catalogs of train.txt, then games.txt (FreeDict's dictionary is read but
# left out of training: with it, every set but single dictionary words lost 2-4 chrF, see the
# card); 3,200 updates with the games' pairs added twice more (one stage: 95 min on 2 busy cores),
# validated every 400 updates; then export, quantize, evaluate and ship int8 with a vocabulary
# shortlist; then the bundle it replaced (models/en-fr at PREVIOUS_FR, trained with the
# dictionary) is scored as served on its evaluation sets, for the card.
PREVIOUS_FR := 6ad45e4
model-fr: $(VENV)/.dev
	$(PY) -m model_export corpus --lang fr --data work/data-fr
	$(PY) -m model_export train --data work/data-fr --run work/run-en-fr-no-dictionary \
		--max-steps 3200 --batch-tokens 4000 --eval-every 400 --dev-limit 1500 \
		--oversample=train-games.tsv:2 --exclude train-dictionary.tsv
	$(PY) -m model_export bundle --data work/data-fr --run work/run-en-fr-no-dictionary \
		--target-lang fr --out work/run-en-fr-no-dictionary-bundle-full
	$(PY) -m model_export ship --bundle work/run-en-fr-no-dictionary-bundle-full --variants int8 \
		--out work/bundle-fr
	$(PY) -m model_export shortlist --bundle work/bundle-fr --data work/data-fr
	rm -rf work/previous-fr && mkdir -p work/previous-fr
	git archive $(PREVIOUS_FR) models/en-fr | tar -x -C work/previous-fr
	$(PY) -m model_export compare --bundle work/bundle-fr --previous work/previous-fr/models/en-fr \
		--data work/data-fr
	rm -rf models/en-fr && cp -r work/bundle-fr models/en-fr

# en-es: the Spanish catalogs of train.txt, then games.txt, then FreeDict's dictionary;
# 3,200 updates with the games' pairs added twice more and the dictionary's once more (one
# stage: 92 min on 2 cores), validated every 400 updates; then export, quantize, evaluate
# (3 min) and ship int8, with a vocabulary shortlist. Unlike French, Spanish keeps the
# dictionary: `make ablation LANG=es WITHOUT=dictionary` (83 min) scored 0.7 chrF lower on
# the held-out applications and 1.5 on games without it (the card's "What each source adds");
# without games' catalogs (`WITHOUT=games`, 82 min) games' strings fell from 57.4 to 45.0 chrF.
model-es: $(VENV)/.dev
	$(PY) -m model_export corpus --lang es --data work/data-es
	$(PY) -m model_export train --data work/data-es --run work/run-en-es --max-steps 3200 \
		--batch-tokens 4000 --eval-every 400 --dev-limit 1500 \
		--oversample train-games.tsv:2 --oversample train-dictionary.tsv:1
	$(PY) -m model_export bundle --data work/data-es --run work/run-en-es --target-lang es \
		--out work/bundle-full-es
	$(PY) -m model_export ship --bundle work/bundle-full-es --variants int8 --out models/en-es
	$(PY) -m model_export shortlist --bundle models/en-es --data work/data-es

# What one source of the recipe adds (#25): `make ablation LANG=fr WITHOUT=dictionary` (or
# games) trains en-fr's schedule on the same corpus without that source's pairs (`train
# --exclude`), bundles it as the model is shipped, and scores it beside the shipped model, as
# served, on the same evaluation sets (kept in the shipped model's manifest and card).
WITHOUT := dictionary
ABLATION := work/run-en-$(MODEL_LANG)-no-$(WITHOUT)
ablation: $(VENV)/.dev
	test -f work/data-$(MODEL_LANG)/train.tsv || \
		$(PY) -m model_export corpus --lang $(MODEL_LANG) --data work/data-$(MODEL_LANG)
	$(PY) -m model_export train --data work/data-$(MODEL_LANG) --run $(ABLATION) --max-steps 3200 \
		--batch-tokens 4000 --eval-every 400 --dev-limit 1500 \
		$(filter-out --oversample=train-$(WITHOUT).tsv:%,--oversample=train-games.tsv:2 \
			--oversample=train-dictionary.tsv:1) --exclude train-$(WITHOUT).tsv
	$(PY) -m model_export bundle --data work/data-$(MODEL_LANG) --run $(ABLATION) \
		--target-lang $(MODEL_LANG) --out $(ABLATION)-bundle-full
	$(PY) -m model_export ship --bundle $(ABLATION)-bundle-full --variants int8 --out $(ABLATION)-bundle
	$(PY) -m model_export shortlist --bundle $(ABLATION)-bundle --data work/data-$(MODEL_LANG)
	$(PY) -m model_export ablation --bundle models/en-$(MODEL_LANG) --ablation $(ABLATION)-bundle \
		--without $(WITHOUT) --data work/data-$(MODEL_LANG)

# Benchmarks (needs `make model` first for the PyTorch baseline); see BENCHMARKS.md.
bench: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk
	$(PY) -m bench

# The step-level batching engine against the request-level one (the last commit with it).
ENGINE_BASELINE := dee74a9
bench-engine: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk
	test -d work/engine-baseline || git worktree add work/engine-baseline $(ENGINE_BASELINE)
	$(PY) -m bench.engine

# This tree (with and without its shortlist) against the tree at SERVING_BASELINE serving its
# own bundle, then serving this tree's model, over HTTP at 1 and 64 clients (bench/ab.md,
# bench/ab-same-model.md); one decoder step by rows and encoding by sentences (bench/step.md).
SERVING_BASELINE := a2cf339
bench-ab: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk
	test -d work/ab-baseline || git worktree add work/ab-baseline $(SERVING_BASELINE)
	$(PY) -m bench.ab --baseline work/ab-baseline
	$(PY) -m bench.ab --baseline work/ab-baseline --same-model --out ab-same-model

# A small request behind one request that holds every place, against the commit before
# newcomers could start beyond the cap.
PLACES_BASELINE := 4727d0c
bench-places: $(VENV)/.dev
	test -d work/places-baseline || git worktree add work/places-baseline $(PLACES_BASELINE)
	$(PY) -m bench.places --baseline work/places-baseline

bench-step: $(VENV)/.dev
	$(PY) -m bench.step

# Finding glossary terms by glossary size, and merging a request's own entries (bench/glossary.md)
bench-glossary: $(VENV)/.dev
	$(PY) -m bench.glossary

# Several models in one service: does a busy model starve another? (bench/models.md)
bench-models: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk
	$(PY) -m bench.models

# OpenNMT-py 3.5.1 in its own venv (work/onmt-venv): retrains the import fixtures of
# tests/data/opennmt (needs work/data from `make model`'s corpus step); the benchmark below
# runs its onmt_server.
opennmt-fixtures: $(VENV)/.dev
	sh scripts/opennmt-fixtures.sh

# onmt_server and this service on the same imported checkpoint, 1 and 64 clients, beam 4.
bench-opennmt: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk
	test -x work/onmt-venv/bin/onmt_server || sh scripts/opennmt-fixtures.sh
	$(PY) -m bench.opennmt

# Build and run the CPU image with podman (no Docker engine needed), record what it answered
# and check that it answers as this checkout does.
docker-check: $(VENV)/.service
	../shared/tools/container-check compose docker/docker-compose.yml translate \
		--post /translate --body '{"text": "Could not save the file %s.", "beam_size": 4}' \
		> docs/container-check.txt 2>&1; status=$$?; cat docs/container-check.txt; exit $$status
	$(PY) scripts/compare-container.py docs/container-check.txt

# Mutation testing of the decoding core (not part of `make test`; 10-13 min on 2 cores): the last
# line is the score; docs/mutation.md records the last run and every surviving mutant.
mutation: $(VENV)/.dev
	$(PY) scripts/mutation.py

# README's models table and quick-start answer, and docs/playground.png, from the current
# models (a real server and Debian's chromium); tests/integration/test_readme.py checks them.
docs: $(VENV)/.dev tools
	$(PY) scripts/make_docs.py

clean:
	rm -rf $(VENV) work artifacts .pytest_cache .mypy_cache .ruff_cache
