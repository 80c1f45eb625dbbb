/* sublist.c -- the token trie of subscription filters (see sublist.h). */
#include <stdlib.h>
#include <string.h>
#include "sublist.h"
#include "topic.h"

typedef struct node node_t;

/* A literal child: the token and the node below it. */
typedef struct edge {
    struct edge *next;         /* hash chain */
    node_t *child;
    uint32_t hash, len;
    char tok[];
} edge_t;

struct node {
    node_t *parent;
    edge_t *up;                /* the edge from the parent (NULL: root or `*`) */
    edge_t **lit;              /* literal children, chained hash */
    uint32_t nlit, litcap;     /* litcap: 0 or a power of two    */
    node_t *star;              /* the `*` child                  */
    fo_sub_t *end;             /* filters ending here            */
    fo_sub_t *rest;            /* filters ending here with `>`   */
};

struct fo_sublist {
    node_t root;
    size_t nsubs, nnodes;
};

fo_err_t fo_sublist_create(fo_sublist_t **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FO_OK : FO_ERR_NOMEM;
}

static void node_free(node_t *n)
{
    for (uint32_t i = 0; i < n->litcap; i++)
        for (edge_t *e = n->lit[i], *nx; e; e = nx) {
            nx = e->next;
            node_free(e->child);
            free(e->child);
            free(e);
        }
    free(n->lit);
    if (n->star) {
        node_free(n->star);
        free(n->star);
    }
}

void fo_sublist_destroy(fo_sublist_t *l)
{
    if (!l)
        return;
    node_free(&l->root);
    free(l);
}

size_t fo_sublist_subs(const fo_sublist_t *l) { return l->nsubs; }
size_t fo_sublist_nodes(const fo_sublist_t *l) { return l->nnodes; }

/* ------------------------------------------------------------ literal children */

static edge_t *lit_find(const node_t *n, const char *tok, size_t len, uint32_t h)
{
    if (!n->litcap)
        return NULL;
    for (edge_t *e = n->lit[h & (n->litcap - 1)]; e; e = e->next)
        if (e->hash == h && e->len == len && !memcmp(e->tok, tok, len))
            return e;
    return NULL;
}

static fo_err_t lit_grow(node_t *n)
{
    uint32_t ncap = n->litcap ? n->litcap * 2 : 2;
    edge_t **nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return FO_ERR_NOMEM;
    for (uint32_t i = 0; i < n->litcap; i++)
        for (edge_t *e = n->lit[i], *nx; e; e = nx) {
            nx = e->next;
            e->next = nt[e->hash & (ncap - 1)];
            nt[e->hash & (ncap - 1)] = e;
        }
    free(n->lit);
    n->lit = nt;
    n->litcap = ncap;
    return FO_OK;
}

static void lit_unlink(node_t *n, edge_t *gone)
{
    for (edge_t **pp = &n->lit[gone->hash & (n->litcap - 1)]; *pp; pp = &(*pp)->next)
        if (*pp == gone) {
            *pp = gone->next;
            n->nlit--;
            return;
        }
}

/* ------------------------------------------------------------ insert / remove */

/* The child of n for token tok, made when missing (NULL: out of memory). */
static node_t *child(fo_sublist_t *l, node_t *n, const char *tok, size_t len)
{
    if (len == 1 && tok[0] == '*') {
        if (!n->star && (n->star = calloc(1, sizeof *n->star))) {
            n->star->parent = n;
            l->nnodes++;
        }
        return n->star;
    }
    uint32_t h = fo_topic_hash(tok, len);
    edge_t *e = lit_find(n, tok, len, h);
    if (e)
        return e->child;
    if (n->nlit + 1 > n->litcap && lit_grow(n))
        return NULL;
    e = malloc(sizeof *e + len);
    node_t *c = calloc(1, sizeof *c);
    if (!e || !c) {
        free(e);
        free(c);
        return NULL;
    }
    memcpy(e->tok, tok, len);
    e->len = (uint32_t)len;
    e->hash = h;
    e->child = c;
    e->next = n->lit[h & (n->litcap - 1)];
    n->lit[h & (n->litcap - 1)] = e;
    n->nlit++;
    c->parent = n;
    c->up = e;
    l->nnodes++;
    return c;
}

static void push(fo_sub_t **list, fo_sub_t *s)
{
    s->sl_prev = NULL;
    s->sl_next = *list;
    if (*list)
        (*list)->sl_prev = s;
    *list = s;
}

/* Free empty nodes from n up to (not including) the root. */
static void prune(fo_sublist_t *l, node_t *n)
{
    while (n->parent && !n->end && !n->rest && !n->star && !n->nlit) {
        node_t *p = n->parent;
        if (n->up) {
            lit_unlink(p, n->up);
            free(n->up);
        } else {
            p->star = NULL;
        }
        free(n->lit);
        free(n);
        l->nnodes--;
        n = p;
    }
}

fo_err_t fo_sublist_insert(fo_sublist_t *l, fo_sub_t *sub)
{
    node_t *n = &l->root;
    const char *f = sub->filter;
    for (;;) {
        const char *dot = strchr(f, '.');
        size_t len = dot ? (size_t)(dot - f) : strlen(f);
        if (!dot && len == 1 && f[0] == '>') {
            push(&n->rest, sub);
            sub->sl_rest = 1;
            break;
        }
        node_t *c = child(l, n, f, len);
        if (!c) {
            prune(l, n);
            return FO_ERR_NOMEM;
        }
        n = c;
        if (!dot) {
            push(&n->end, sub);
            sub->sl_rest = 0;
            break;
        }
        f = dot + 1;
    }
    sub->sl_node = n;
    l->nsubs++;
    return FO_OK;
}

void fo_sublist_remove(fo_sublist_t *l, fo_sub_t *sub)
{
    node_t *n = sub->sl_node;
    if (!n)
        return;
    fo_sub_t **list = sub->sl_rest ? &n->rest : &n->end;
    if (sub->sl_prev)
        sub->sl_prev->sl_next = sub->sl_next;
    else
        *list = sub->sl_next;
    if (sub->sl_next)
        sub->sl_next->sl_prev = sub->sl_prev;
    sub->sl_prev = sub->sl_next = NULL;
    sub->sl_node = NULL;
    l->nsubs--;
    prune(l, n);
}

/* ------------------------------------------------------------ match */

static void each(fo_sub_t *list, fo_sublist_fn cb, void *ud)
{
    for (fo_sub_t *s = list, *nx; s; s = nx) {
        nx = s->sl_next;
        cb(ud, s);
    }
}

/* The topic's tokens from t[0..len) on, below node n. Each filter is one
 * path through the trie, so each subscription is reached at most once. */
static void match(const node_t *n, const char *t, size_t len, fo_sublist_fn cb, void *ud)
{
    for (;;) {
        each(n->rest, cb, ud);               /* `>` takes one or more tokens */
        const char *dot = memchr(t, '.', len);
        size_t tl = dot ? (size_t)(dot - t) : len;
        const edge_t *e = lit_find(n, t, tl, fo_topic_hash(t, tl));
        if (n->star) {
            if (dot)
                match(n->star, dot + 1, len - tl - 1, cb, ud);
            else
                each(n->star->end, cb, ud);
        }
        if (!e)
            return;
        n = e->child;
        if (!dot) {
            each(n->end, cb, ud);
            return;
        }
        t = dot + 1;
        len -= tl + 1;
    }
}

void fo_sublist_match(const fo_sublist_t *l, const char *name, size_t len,
                      fo_sublist_fn cb, void *ud)
{
    if (len)
        match(&l->root, name, len, cb, ud);
}
