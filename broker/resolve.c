/* resolve.c -- the resolver thread of the cluster's peers (resolve.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "addr.h"
#include "log.h"
#include "resolve.h"

typedef struct entry {
    char name[FO_ADDR_HOST_MAX + 32];   /* HOST:PORT, "dns:" taken off */
    char addrs[16][FO_NET_ADDR_MAX];    /* its last good answer         */
    int naddrs;
    int failing;                        /* logged once per outage       */
} entry_t;

struct fo_resolver {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop, kicked;
    uint32_t interval_ms;
    entry_t e[FO_RESOLVE_ENTRIES];
    int n;
    /* the published result (lock) */
    char out[FO_RESOLVE_ADDRS][FO_NET_ADDR_MAX];
    int nout;
    uint64_t gen, rounds;
};

static fo_err_t parse(const char *list, entry_t *e, int *n, char *err, size_t errlen)
{
    *n = 0;
    const char *p = list;
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ", ");
        char tok[FO_ADDR_HOST_MAX + 32];
        if (len >= sizeof tok) {
            snprintf(err, errlen, "fanoutd: --cluster-peers: an entry is too long");
            return FO_ERR_INVAL;
        }
        memcpy(tok, p, len);
        tok[len] = 0;
        p += len;
        const char *hp = strncmp(tok, "dns:", 4) ? tok : tok + 4;
        fo_addr_t a;
        if (fo_addr_parse(hp, FO_ADDR_NEED_PORT | FO_ADDR_NO_SCHEME, &a) || !a.host[0]) {
            snprintf(err, errlen, "fanoutd: --cluster-peers: \"%s\" is not HOST:PORT or dns:NAME:PORT", tok);
            return FO_ERR_INVAL;
        }
        if (*n == FO_RESOLVE_ENTRIES) {
            snprintf(err, errlen, "fanoutd: --cluster-peers: at most %d entries", FO_RESOLVE_ENTRIES);
            return FO_ERR_INVAL;
        }
        if (e)
            snprintf(e[*n].name, sizeof e[*n].name, "%s", hp);
        (*n)++;
    }
    return FO_OK;
}

fo_err_t fo_resolver_check(const char *list, char *err, size_t errlen)
{
    int n;
    return parse(list, NULL, &n, err, errlen);
}

static void round_once(fo_resolver_t *r)
{
    for (int i = 0; i < r->n; i++) {
        entry_t *e = &r->e[i];
        char why[300];
        char got[16][FO_NET_ADDR_MAX];
        int k = fo_net_resolve(e->name, got, 16, why, sizeof why);
        if (k < 0) {
            if (!e->failing)
                fo_warn(0, "cluster: cannot resolve %s (%s): keeping its last %d addresses", e->name, why,
                        e->naddrs);
            e->failing = 1;
            continue;
        }
        if (e->failing)
            fo_info(0, "cluster: %s resolves again", e->name);
        e->failing = 0;
        memcpy(e->addrs, got, sizeof got);
        e->naddrs = k;
    }
    pthread_mutex_lock(&r->lock);
    int n = 0;
    for (int i = 0; i < r->n; i++)
        for (int k = 0; k < r->e[i].naddrs && n < FO_RESOLVE_ADDRS; k++) {
            int dup = 0;
            for (int j = 0; j < n && !dup; j++)
                dup = !strcmp(r->out[j], r->e[i].addrs[k]);
            if (!dup)
                memcpy(r->out[n++], r->e[i].addrs[k], FO_NET_ADDR_MAX);
        }
    r->nout = n;
    r->gen++;
    r->rounds++;
    pthread_mutex_unlock(&r->lock);
}

static void *run(void *arg)
{
    fo_resolver_t *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        pthread_mutex_unlock(&r->lock);
        round_once(r);
        pthread_mutex_lock(&r->lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += r->interval_ms / 1000;
        ts.tv_nsec += (long)(r->interval_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!r->stop && !r->kicked)
            if (pthread_cond_timedwait(&r->cond, &r->lock, &ts))
                break;              /* the interval passed */
        r->kicked = 0;
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

fo_err_t fo_resolver_start(const char *list, uint32_t interval_ms, fo_resolver_t **out, char *err,
                           size_t errlen)
{
    fo_resolver_t *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "fanoutd: out of memory");
        return FO_ERR_NOMEM;
    }
    fo_err_t e = parse(list, r->e, &r->n, err, errlen);
    if (e) {
        free(r);
        return e;
    }
    r->interval_ms = interval_ms;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&r->thread, NULL, run, r)) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        snprintf(err, errlen, "fanoutd: cannot start the cluster resolver thread");
        return FO_ERR_IO;
    }
    *out = r;
    return FO_OK;
}

void fo_resolver_kick(fo_resolver_t *r)
{
    pthread_mutex_lock(&r->lock);
    r->kicked = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

int fo_resolver_take(fo_resolver_t *r, uint64_t *gen, char (*out)[FO_NET_ADDR_MAX], int max, uint64_t *rounds)
{
    int n = -1;
    pthread_mutex_lock(&r->lock);
    *rounds = r->rounds;
    if (r->gen != *gen) {
        n = r->nout < max ? r->nout : max;
        memcpy(out, r->out, (size_t)n * FO_NET_ADDR_MAX);
        *gen = r->gen;
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

void fo_resolver_stop(fo_resolver_t *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = 1;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
