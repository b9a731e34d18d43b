# Use case 2: French court decision -> German headnote (bigger model, LoRA/QLoRA,
# long context). user.jinja branches on headnote_language.
#   make court-data
#   make court-data COURT_SOURCE=hf://datasets/ORG/NAME COURT_FETCH='--subset fr_de --split train'
COURT_SOURCE      ?= tests/fixtures/datasets/court/fr_de/train.jsonl
COURT_FETCH       ?=
COURT_VAL_SOURCE  ?= tests/fixtures/datasets/court/fr_de/validation.jsonl
COURT_MODEL       ?= $(DEFAULT_MODEL)
COURT_OUT         ?= data/court
COURT_SEQ_LEN     ?= 8192
COURT_PROMPTS     := prompts/rcds/swiss_leading_decision_summarization

COURT_ENC = tok-encode --model $(COURT_MODEL) --assistant-only --max-length $(COURT_SEQ_LEN) --truncation keep-start

.PHONY: court-data court-clean
court-data: $(COURT_OUT)/train/manifest.json $(COURT_OUT)/validation/manifest.json

$(COURT_OUT)/train/manifest.json:
	@mkdir -p $(COURT_OUT); rm -rf $(COURT_OUT)/train
	ds-fetch $(COURT_SOURCE) $(COURT_FETCH) \
	  | ds-template --prompts $(COURT_PROMPTS) \
	  | ds-dedup --exact --against $(COURT_VAL_SOURCE) \
	  | $(COURT_ENC) \
	  | pack --seq-len $(COURT_SEQ_LEN) --seed $(SEED) --out $(COURT_OUT)/train

$(COURT_OUT)/validation/manifest.json:
	@mkdir -p $(COURT_OUT); rm -rf $(COURT_OUT)/validation
	ds-fetch $(COURT_VAL_SOURCE) \
	  | ds-template --prompts $(COURT_PROMPTS) \
	  | $(COURT_ENC) \
	  | pack --seq-len $(COURT_SEQ_LEN) --seed $(SEED) --out $(COURT_OUT)/validation

court-clean:
	rm -rf $(COURT_OUT)
