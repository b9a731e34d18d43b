#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d) {
		perror("strdup");
		abort();
	}
	return d;
}

static int add_entry(config *c, const char *key, const char *value, const char *section, int line,
		     int is_list)
{
	config_entry *e = realloc(c->entries, (c->n + 1) * sizeof *e);
	if (!e)
		return -1;
	c->entries = e;
	e = &c->entries[c->n++];
	e->key = xstrdup(key);
	e->value = xstrdup(value);
	e->section = section ? xstrdup(section) : NULL;
	e->line = line;
	e->is_list = is_list;
	return 0;
}

/* Recursive walk of the document tree. */
static int walk(config *c, yaml_document_t *doc, yaml_node_t *node, const char *key,
		const char *section, int is_list, sft_error *err)
{
	int line = (int)node->start_mark.line + 1;
	switch (node->type) {
	case YAML_SCALAR_NODE: {
		if (!key)
			return sft_error_set(err, SFT_EXIT_USAGE, "%s:%d: expected a mapping of option names",
					     c->path, line);
		char *v = strndup((const char *)node->data.scalar.value, node->data.scalar.length);
		if (!v)
			return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		/* YAML null (~, null, empty plain scalar) becomes "" */
		if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
		    (!strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL")))
			v[0] = '\0';
		int rc = add_entry(c, key, v, section, line, is_list);
		free(v);
		return rc < 0 ? sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory") : 0;
	}
	case YAML_SEQUENCE_NODE: {
		if (!key)
			return sft_error_set(err, SFT_EXIT_USAGE, "%s:%d: expected a mapping of option names",
					     c->path, line);
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top; it++) {
			yaml_node_t *child = yaml_document_get_node(doc, *it);
			if (!child || child->type != YAML_SCALAR_NODE)
				return sft_error_set(err, SFT_EXIT_USAGE,
						     "%s:%d: list for '%s' must hold scalars", c->path,
						     child ? (int)child->start_mark.line + 1 : line, key);
			int rc = walk(c, doc, child, key, section, 1, err);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	case YAML_MAPPING_NODE:
		for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
		     p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			yaml_node_t *v = yaml_document_get_node(doc, p->value);
			if (!k || k->type != YAML_SCALAR_NODE || !v)
				return sft_error_set(err, SFT_EXIT_USAGE, "%s:%d: keys must be plain names",
						     c->path, k ? (int)k->start_mark.line + 1 : line);
			char *kname = strndup((const char *)k->data.scalar.value, k->data.scalar.length);
			if (!kname)
				return sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
			int rc = walk(c, doc, v, kname, key ? key : section, 0, err);
			free(kname);
			if (rc < 0)
				return rc;
		}
		return 0;
	default:
		return 0;
	}
}

config *config_load(const char *path, sft_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		sft_error_set(err, SFT_EXIT_USAGE, "%s: cannot open config: %s", path, strerror(errno));
		return NULL;
	}
	config *c = calloc(1, sizeof *c);
	if (!c) {
		fclose(f);
		sft_error_set(err, SFT_EXIT_RUNTIME, "out of memory");
		return NULL;
	}
	c->path = xstrdup(path);
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		sft_error_set(err, SFT_EXIT_USAGE, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
			      parser.problem_mark.column + 1,
			      parser.problem ? parser.problem : "invalid YAML");
		yaml_parser_delete(&parser);
		fclose(f);
		config_free(c);
		return NULL;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	int rc = 0;
	if (root) {
		if (root->type != YAML_MAPPING_NODE)
			rc = sft_error_set(err, SFT_EXIT_USAGE, "%s:%d: top level must be a mapping", path,
					   (int)root->start_mark.line + 1);
		else
			rc = walk(c, &doc, root, NULL, NULL, 0, err);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	if (rc < 0) {
		config_free(c);
		return NULL;
	}
	return c;
}

void config_free(config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->entries[i].key);
		free(c->entries[i].value);
		free(c->entries[i].section);
	}
	free(c->entries);
	free(c->path);
	free(c);
}

int config_key_eq(const char *a, const char *b)
{
	for (;; a++, b++) {
		char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
		if (x != y)
			return 0;
		if (!x)
			return 1;
	}
}

const config_entry *config_get(const config *c, const char *key)
{
	const config_entry *found = NULL;
	for (size_t i = 0; c && i < c->n; i++)
		if (config_key_eq(c->entries[i].key, key))
			found = &c->entries[i];
	return found;
}
