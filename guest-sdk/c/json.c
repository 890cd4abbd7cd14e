/* kubewasm C guest SDK: reading JSON with jsmn (Debian's libjsmn-dev, header-only) and
 * writing JSON strings. */
#include <stdlib.h>
#include <string.h>

#include "kubewasm.h"

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

bool kw_parse(const char *json, size_t len, kw_object *out) {
    jsmn_parser parser;
    jsmn_init(&parser);
    int count = jsmn_parse(&parser, json, len, NULL, 0);
    if (count <= 0) return false;
    jsmntok_t *tokens = calloc((size_t)count, sizeof *tokens);
    if (!tokens) abort();
    jsmn_init(&parser);
    if (jsmn_parse(&parser, json, len, tokens, (unsigned)count) != count) {
        free(tokens);
        return false;
    }
    *out = (kw_object){.json = json, .len = len, .tokens = tokens, .count = count};
    return true;
}

void kw_object_free(kw_object *object) {
    free(object->tokens);
    object->tokens = NULL;
    object->count = 0;
}

/* The index of the token after token `index` and everything inside it. */
static int skip(const jsmntok_t *tokens, int count, int index) {
    int children = tokens[index].size;
    int next = index + 1;
    for (int child = 0; child < children && next < count; child++) {
        next = skip(tokens, count, next);
    }
    return next;
}

static bool key_equals(const kw_object *object, const jsmntok_t *key, const char *name,
                       size_t name_len) {
    return key->type == JSMN_STRING && (size_t)(key->end - key->start) == name_len &&
           memcmp(object->json + key->start, name, name_len) == 0;
}

/* The token of the value at a dotted path, or -1. */
static int find(const kw_object *object, const char *path) {
    const jsmntok_t *tokens = object->tokens;
    int index = 0;
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t name_len = dot ? (size_t)(dot - path) : strlen(path);
        if (index >= object->count || tokens[index].type != JSMN_OBJECT) return -1;
        int members = tokens[index].size, next = index + 1, found = -1;
        for (int member = 0; member < members && next + 1 < object->count; member++) {
            if (key_equals(object, &tokens[next], path, name_len)) {
                found = next + 1;
                break;
            }
            next = skip(tokens, object->count, next + 1);
        }
        if (found < 0) return -1;
        index = found;
        path += name_len + (dot ? 1 : 0);
    }
    return index < object->count ? index : -1;
}

char *kw_json_raw(const kw_object *object, const char *path) {
    int index = find(object, path);
    if (index < 0) return NULL;
    const jsmntok_t *token = &((const jsmntok_t *)object->tokens)[index];
    /* jsmn's string tokens exclude the quotes. */
    int quote = token->type == JSMN_STRING ? 1 : 0;
    int start = token->start - quote, len = token->end - token->start + 2 * quote;
    char *text = malloc((size_t)len + 1);
    if (!text) abort();
    memcpy(text, object->json + start, (size_t)len);
    text[len] = '\0';
    return text;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static unsigned long hex4(const char *text) {
    unsigned long value = 0;
    for (int i = 0; i < 4; i++) value = value * 16 + (unsigned long)hex_digit(text[i]);
    return value;
}

static char *put_utf8(char *out, unsigned long code) {
    if (code < 0x80) {
        *out++ = (char)code;
    } else if (code < 0x800) {
        *out++ = (char)(0xC0 | (code >> 6));
        *out++ = (char)(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        *out++ = (char)(0xE0 | (code >> 12));
        *out++ = (char)(0x80 | ((code >> 6) & 0x3F));
        *out++ = (char)(0x80 | (code & 0x3F));
    } else {
        *out++ = (char)(0xF0 | (code >> 18));
        *out++ = (char)(0x80 | ((code >> 12) & 0x3F));
        *out++ = (char)(0x80 | ((code >> 6) & 0x3F));
        *out++ = (char)(0x80 | (code & 0x3F));
    }
    return out;
}

char *kw_json_string(const kw_object *object, const char *path) {
    int index = find(object, path);
    if (index < 0) return NULL;
    const jsmntok_t *token = &((const jsmntok_t *)object->tokens)[index];
    if (token->type != JSMN_STRING) return NULL;
    const char *in = object->json + token->start, *end = object->json + token->end;
    /* Unescaping never makes the text longer; strict jsmn checked every escape. */
    char *text = malloc((size_t)(end - in) + 1), *out = text;
    if (!text) abort();
    while (in < end) {
        if (*in != '\\') {
            *out++ = *in++;
            continue;
        }
        char escaped = in[1];
        in += 2;
        switch (escaped) {
        case 'b': *out++ = '\b'; break;
        case 'f': *out++ = '\f'; break;
        case 'n': *out++ = '\n'; break;
        case 'r': *out++ = '\r'; break;
        case 't': *out++ = '\t'; break;
        case 'u': {
            unsigned long code = hex4(in);
            in += 4;
            if (code >= 0xD800 && code < 0xDC00 && end - in >= 6 && in[0] == '\\' &&
                in[1] == 'u') {
                unsigned long low = hex4(in + 2);
                if (low >= 0xDC00 && low < 0xE000) {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    in += 6;
                }
            }
            out = put_utf8(out, code);
            break;
        }
        default: *out++ = escaped; /* \" \\ \/ */
        }
    }
    *out = '\0';
    return text;
}

char *kw_json_quote(const char *text) {
    /* Worst case: every byte becomes \u00XX. */
    char *quoted = malloc(strlen(text) * 6 + 3), *out = quoted;
    if (!quoted) abort();
    *out++ = '"';
    for (const unsigned char *in = (const unsigned char *)text; *in; in++) {
        static const char hex[] = "0123456789abcdef";
        switch (*in) {
        case '"': *out++ = '\\'; *out++ = '"'; break;
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        default:
            if (*in < 0x20) {
                memcpy(out, "\\u00", 4);
                out[4] = hex[*in >> 4];
                out[5] = hex[*in & 0xF];
                out += 6;
            } else {
                *out++ = (char)*in;
            }
        }
    }
    *out++ = '"';
    *out = '\0';
    return quoted;
}
