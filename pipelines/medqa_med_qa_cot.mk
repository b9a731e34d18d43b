# Use case 3: medical multiple choice with chain of thought (multi-epoch, validation
# loss per epoch, test accuracy via the regex on "the answer is (X)").
#   make medqa-data
MEDQA_SOURCE      ?= tests/fixtures/datasets/medqa/train.jsonl
MEDQA_FETCH       ?=
MEDQA_TEST_SOURCE ?= tests/fixtures/datasets/medqa/test.jsonl
MEDQA_MODEL       ?= $(DEFAULT_MODEL)
MEDQA_OUT         ?= data/medqa
MEDQA_SEQ_LEN     ?= 2048
MEDQA_PROMPTS     := prompts/medqa/med_qa_cot

MEDQA_PREP = ds-template --prompts $(MEDQA_PROMPTS) | ds-dedup --exact --minhash --against $(MEDQA_TEST_SOURCE)

.PHONY: medqa-data medqa-clean
medqa-data: $(MEDQA_OUT)/train/manifest.json $(MEDQA_OUT)/validation/manifest.json $(MEDQA_OUT)/test.jsonl

$(MEDQA_OUT)/train/manifest.json $(MEDQA_OUT)/validation/manifest.json: $(MEDQA_OUT)/%/manifest.json:
	@mkdir -p $(MEDQA_OUT); rm -rf $(MEDQA_OUT)/$*
	ds-fetch $(MEDQA_SOURCE) $(MEDQA_FETCH) --split-ratios train=0.85,validation=0.15 --seed $(SEED) --take $* \
	  | $(MEDQA_PREP) \
	  | tok-encode --model $(MEDQA_MODEL) --assistant-only \
	  | pack --seq-len $(MEDQA_SEQ_LEN) --seed $(SEED) --out $(MEDQA_OUT)/$*

$(MEDQA_OUT)/test.jsonl:
	@mkdir -p $(MEDQA_OUT)
	ds-fetch $(MEDQA_TEST_SOURCE) | ds-template --prompts $(MEDQA_PROMPTS) -o $@

medqa-clean:
	rm -rf $(MEDQA_OUT)
