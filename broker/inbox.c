/* inbox.c -- worker inbox: mutex-guarded batch queue + eventfd (inbox.h). */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "inbox.h"

fo_err_t fo_inbox_init(fo_inbox_t *ib)
{
    memset(ib, 0, sizeof *ib);
    ib->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ib->efd < 0)
        return FO_ERR_IO;
    if (pthread_mutex_init(&ib->lock, NULL)) {
        close(ib->efd);
        return FO_ERR_NOMEM;
    }
    return FO_OK;
}

void fo_inbox_destroy(fo_inbox_t *ib)
{
    for (size_t i = 0; i < ib->len; i++) {
        fo_item_t *it = &ib->items[i];
        if (it->kind == FO_ITEM_CONN || it->kind == FO_ITEM_CONN_TLS)
            close(it->u.fd);
        else if (it->kind == FO_ITEM_CTL)
            it->u.ctl->drop(it->u.ctl);
        else if (it->kind == FO_ITEM_ADOPT || it->kind == FO_ITEM_FORGET)
            ;       /* worker.c takes these out before destroying an inbox */
        else
            fo_msg_unref(it->u.msg);
    }
    free(ib->items);
    if (ib->efd >= 0)
        close(ib->efd);
    pthread_mutex_destroy(&ib->lock);
    ib->items = NULL;
    ib->len = ib->cap = 0;
    ib->efd = -1;
}

fo_err_t fo_inbox_post(fo_inbox_t *ib, const fo_item_t *items, size_t n)
{
    if (n == 0)
        return FO_OK;
    pthread_mutex_lock(&ib->lock);
    if (ib->len + n > ib->cap) {
        size_t ncap = ib->cap ? ib->cap : 64;
        while (ncap < ib->len + n)
            ncap *= 2;
        fo_item_t *ni = realloc(ib->items, ncap * sizeof *ni);
        if (!ni) {
            pthread_mutex_unlock(&ib->lock);
            return FO_ERR_NOMEM;
        }
        ib->items = ni;
        ib->cap = ncap;
    }
    int was_empty = ib->len == 0;
    memcpy(ib->items + ib->len, items, n * sizeof *items);
    ib->len += n;
    pthread_mutex_unlock(&ib->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(ib->efd, &one, sizeof one);
        (void)w;   /* EAGAIN only if the counter is saturated: still awake */
    }
    return FO_OK;
}

size_t fo_inbox_take(fo_inbox_t *ib, fo_item_t **items, size_t *cap)
{
    pthread_mutex_lock(&ib->lock);
    size_t n = ib->len;
    fo_item_t *mine = ib->items;
    size_t mycap = ib->cap;
    ib->items = *items;
    ib->cap = *cap;
    ib->len = 0;
    pthread_mutex_unlock(&ib->lock);
    *items = mine;
    *cap = mycap;
    return n;
}

void fo_inbox_ack(fo_inbox_t *ib)
{
    uint64_t v;
    ssize_t r = read(ib->efd, &v, sizeof v);
    (void)r;
}

size_t fo_inbox_pending(fo_inbox_t *ib)
{
    pthread_mutex_lock(&ib->lock);
    size_t n = ib->len;
    pthread_mutex_unlock(&ib->lock);
    return n;
}
