# Use case 1: natural language -> SQL (small model, full fine-tune).
#   make sql-data                                   bundled fixture records
#   make sql-data SQL_SOURCE=hf://datasets/gretelai/synthetic_text_to_sql SQL_FETCH='--split train' \
#                 SQL_MODEL=models/SmolLM2-135M-Instruct
# Produces data/sql/{train,validation}/ (packed shards + manifest.json) and
# data/sql/test.jsonl (chat records for sft-eval).
SQL_SOURCE      ?= tests/fixtures/datasets/sql/train.jsonl
SQL_FETCH       ?=
SQL_TEST_SOURCE ?= tests/fixtures/datasets/sql/test.jsonl
SQL_MODEL       ?= $(DEFAULT_MODEL)
SQL_OUT         ?= data/sql
SQL_SEQ_LEN     ?= 2048
SQL_PROMPTS     := prompts/gretelai/synthetic_text_to_sql

SQL_PREP = ds-template --prompts $(SQL_PROMPTS) | ds-dedup --exact --minhash --reject-empty-assistant
SQL_ENC  = tok-encode --model $(SQL_MODEL) --assistant-only

.PHONY: sql-data sql-clean
sql-data: $(SQL_OUT)/train/manifest.json $(SQL_OUT)/validation/manifest.json $(SQL_OUT)/test.jsonl

$(SQL_OUT)/train/manifest.json $(SQL_OUT)/validation/manifest.json: $(SQL_OUT)/%/manifest.json:
	@mkdir -p $(SQL_OUT)
	rm -rf $(SQL_OUT)/$*
	ds-fetch $(SQL_SOURCE) $(SQL_FETCH) --split-ratios train=0.9,validation=0.1 --seed $(SEED) --take $* \
	  | $(SQL_PREP) \
	  | $(SQL_ENC) \
	  | pack --seq-len $(SQL_SEQ_LEN) --seed $(SEED) --out $(SQL_OUT)/$*

$(SQL_OUT)/test.jsonl:
	@mkdir -p $(SQL_OUT)
	ds-fetch $(SQL_TEST_SOURCE) | ds-template --prompts $(SQL_PROMPTS) -o $@

sql-clean:
	rm -rf $(SQL_OUT)
