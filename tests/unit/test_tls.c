/* test_tls.c -- broker/tls.c without sockets: a server session driven
 * through BIO pairs against a client SSL in the same test, the bytes
 * between them moved by the test itself -- one byte at a time, then in
 * random sizes -- so every handshake step, read and write is partial.
 * Covers: the handshake, a read that wants to write (the handshake's
 * flight does not fit), a write that wants to read (output queued before
 * the handshake), > 1 MiB of output packed into records of at most 16 KiB
 * (far fewer SSL_writes than messages) arriving whole and in order, the
 * retry of a kept record, bytes held inside the session (the pending-data
 * trap), close_notify both ways, the user named by a client certificate,
 * and the context: load errors, reload swap, a broken reload kept out.
 * Certificates: tests/support (fo_tb_certs), made with the openssl command. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "harness.h"
#include "log.h"
#include "outq.h"
#include "tls.h"

static const char *certs;
static fo_mem_t mem = { 0, 1ull << 40 };
static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

static void path(char *out, size_t len, const char *file)
{
    snprintf(out, len, "%s/%s", certs, file);
}

/* A config for the TLS options only. */
static void tls_config(fo_config_t *c, const char *cert, const char *key, int verify, int user_from)
{
    fo_config_defaults(c);
    path(c->tls_cert, sizeof c->tls_cert, cert);
    path(c->tls_key, sizeof c->tls_key, key);
    if (verify) {
        path(c->tls_ca, sizeof c->tls_ca, "ca.pem");
        c->tls_verify_client = (fo_tls_verify_t)verify;
    }
    c->tls_user_from = (fo_tls_user_from_t)user_from;
}

static fo_tls_t *make_tls(const char *cert, const char *key, int verify, int user_from)
{
    fo_config_t c;
    tls_config(&c, cert, key, verify, user_from);
    fo_tls_t *t = NULL;
    char err[512];
    if (fo_tls_create(&c, &t, err, sizeof err))
        fail_msg("fo_tls_create: %s", err);
    return t;
}

static SSL_CTX *client_ctx(const char *ca, const char *cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char p[512];
    path(p, sizeof p, ca);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, p, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        char k[512];
        snprintf(p, sizeof p, "%s/%s.pem", certs, cert);
        snprintf(k, sizeof k, "%s/%s.key", certs, cert);
        assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, p), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, k, SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

/* ------------------------------------------------------------ the pair */

typedef struct pair {
    fo_tls_conn_t s;          /* the broker's session           */
    SSL *cli;                 /* the client                     */
    BIO *s_net, *c_net;       /* the network ends of the pairs  */
    size_t chunk;             /* bytes per move; 0 = random     */
    /* server -> client records, parsed on the way */
    uint8_t hdr[5];
    size_t hdr_have, body_left;
    uint64_t app_records, big_records;
    size_t max_record;
    /* what each side's calls said */
    int saw_rd_want_write, saw_wr_want_read, saw_wr_want_write;
    fo_decoder_t dec;         /* the client's frames            */
    fo_arena_t arena;
} pair_t;

static void pair_init(pair_t *p, fo_tls_t *t, SSL_CTX *cctx, size_t bufsize, size_t chunk)
{
    memset(p, 0, sizeof *p);
    assert_int_equal(fo_tls_conn_init(t, &p->s, -1), FO_OK);
    BIO *s_int, *c_int;
    assert_int_equal(BIO_new_bio_pair(&s_int, bufsize, &p->s_net, bufsize), 1);
    SSL_set_bio(p->s.ssl, s_int, s_int);
    p->cli = SSL_new(cctx);
    assert_int_equal(BIO_new_bio_pair(&c_int, bufsize, &p->c_net, bufsize), 1);
    SSL_set_bio(p->cli, c_int, c_int);
    SSL_set_connect_state(p->cli);
    SSL_set_tlsext_host_name(p->cli, "localhost");
    p->chunk = chunk;
    fo_decoder_init(&p->dec, FO_MAX_FRAME_LIMIT);
    assert_int_equal(fo_arena_init(&p->arena, 4096, 0), FO_OK);
}

static void pair_free(pair_t *p)
{
    fo_tls_conn_free(&p->s);
    SSL_free(p->cli);
    BIO_free(p->s_net);
    BIO_free(p->c_net);
    fo_decoder_destroy(&p->dec);
    fo_arena_destroy(&p->arena);
    ERR_clear_error();
}

static void parse_records(pair_t *p, const uint8_t *b, size_t n)
{
    while (n) {
        if (p->body_left) {
            size_t k = n < p->body_left ? n : p->body_left;
            p->body_left -= k;
            b += k;
            n -= k;
            continue;
        }
        p->hdr[p->hdr_have++] = *b++;
        n--;
        if (p->hdr_have == 5) {
            size_t len = ((size_t)p->hdr[3] << 8) | p->hdr[4];
            if (p->hdr[0] == 23) {          /* application data (all of TLS 1.3) */
                p->app_records++;
                if (len > p->max_record)
                    p->max_record = len;
                if (len > 16000)
                    p->big_records++;
            }
            p->body_left = len;
            p->hdr_have = 0;
        }
    }
}

/* Move at most one chunk each way; returns the bytes moved. */
static size_t move(pair_t *p, BIO *from, BIO *to, int parse)
{
    size_t n = BIO_ctrl_pending(from), room = BIO_ctrl_get_write_guarantee(to);
    size_t chunk = p->chunk ? p->chunk : 1 + rnd() % 4096;
    if (n > room) n = room;
    if (n > chunk) n = chunk;
    if (!n)
        return 0;
    uint8_t buf[4096];
    int k = BIO_read(from, buf, (int)n);
    assert_int_equal(k, (int)n);
    assert_int_equal(BIO_write(to, buf, k), k);
    if (parse)
        parse_records(p, buf, n);
    return n;
}

static size_t pump(pair_t *p)
{
    return move(p, p->s_net, p->c_net, 1) + move(p, p->c_net, p->s_net, 0);
}

static void client_read(pair_t *p);

/* Step the server's handshake and the client's until both are done. */
static void handshake(pair_t *p)
{
    int done = 0;
    for (int i = 0; i < 200000 && !(done && SSL_is_init_finished(p->cli)); i++) {
        if (!done) {
            fo_tls_status_t st = fo_tls_handshake(&p->s);
            if (st == FO_TLS_ERROR)
                fail_msg("server handshake: %s", p->s.why);
            if (st == FO_TLS_WANT_WRITE) {
                assert_int_equal(p->s.rd_want, FO_TLS_WANT_WRITE);   /* -> EPOLLOUT */
                p->saw_rd_want_write = 1;
            }
            done = st == FO_TLS_OK;
        }
        if (!SSL_is_init_finished(p->cli)) {
            int r = SSL_do_handshake(p->cli);
            if (r != 1) {
                int e = SSL_get_error(p->cli, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    fail_msg("client handshake: %s", ERR_reason_error_string(ERR_peek_last_error()));
            }
        } else {
            client_read(p);    /* the session ticket the server sends after */
        }
        pump(p);
    }
    if (!done || !SSL_is_init_finished(p->cli))
        print_message("handshake stuck: server %s (rd_want %d), client %s; pending s->c %zu c->s %zu\n",
                      SSL_state_string_long(p->s.ssl), p->s.rd_want, SSL_state_string_long(p->cli),
                      BIO_ctrl_pending(p->s_net), BIO_ctrl_pending(p->c_net));
    assert_true(done);
    assert_true(p->s.established);
    assert_int_equal(p->s.ktls_tx, 0);      /* BIOs: nothing for the kernel */
}

/* The client reads everything it can into its decoder. */
static void client_read(pair_t *p)
{
    for (;;) {
        assert_int_equal(fo_buf_reserve(&p->dec.buf, 65536), FO_OK);
        size_t k = 0;
        size_t want = fo_buf_room(&p->dec.buf);
        if (p->chunk == 1)
            want = 1 + rnd() % 7;           /* small reads too */
        if (SSL_read_ex(p->cli, fo_buf_tail(&p->dec.buf), want, &k) != 1) {
            int e = SSL_get_error(p->cli, 0);
            assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            ERR_clear_error();
            return;
        }
        fo_buf_commit(&p->dec.buf, k);
    }
}

/* n messages (payloads of varied sizes, sids by seq) and a PONG every
 * 1000th, into q; returns the wire bytes. */
static uint64_t fill_queue(fo_outq_t *q, int n)
{
    fo_outq_init(q);
    uint8_t payload[300];
    for (int i = 1; i <= n; i++) {
        size_t len = 20 + rnd() % 250;
        for (size_t k = 0; k < len; k++)
            payload[k] = (uint8_t)(i + k);
        fo_msg_t *m = fo_msg_new(&mem, NULL, "t.q", 3, (uint64_t)i, 0, payload, len, 0);
        assert_non_null(m);
        assert_int_equal(fo_outq_push_msg(q, m, (uint32_t)(i % 7 + 1), 1), FO_OK);
        if (i % 1000 == 0) {
            Fanout__Frame f = FANOUT__FRAME__INIT;
            Fanout__Pong po = FANOUT__PONG__INIT;
            po.has_nonce = 1;
            po.nonce = (uint64_t)i;
            f.body_case = FANOUT__FRAME__BODY_PONG;
            f.pong = &po;
            assert_int_equal(fo_outq_push_frame(q, &f), FO_OK);
        }
    }
    return q->bytes;
}

/* The frames the client decoded are exactly fill_queue's, in order. */
static void check_frames(pair_t *p, int n)
{
    const uint8_t *body;
    size_t len;
    for (int i = 1; i <= n; i++) {
        Fanout__Frame *f;
        fo_arena_reset(&p->arena);
        assert_int_equal(fo_decoder_next(&p->dec, &body, &len), FO_OK);
        assert_int_equal(fo_frame_unpack(body, len, &p->arena, &f), FO_OK);
        assert_int_equal(f->body_case, FANOUT__FRAME__BODY_DELIVER);
        assert_int_equal(f->deliver->seq, (uint64_t)i);
        assert_int_equal(f->sid, (uint32_t)(i % 7 + 1));
        for (size_t k = 0; k < f->deliver->payload.len; k++)
            assert_int_equal(f->deliver->payload.data[k], (uint8_t)(i + k));
        if (i % 1000 == 0) {
            fo_arena_reset(&p->arena);
            assert_int_equal(fo_decoder_next(&p->dec, &body, &len), FO_OK);
            assert_int_equal(fo_frame_unpack(body, len, &p->arena, &f), FO_OK);
            assert_int_equal(f->body_case, FANOUT__FRAME__BODY_PONG);
            assert_int_equal(f->pong->nonce, (uint64_t)i);
        }
    }
    assert_int_equal(fo_decoder_next(&p->dec, &body, &len), FO_ERR_AGAIN);
}

/* Write the whole queue through the pair, the client reading meanwhile. */
static void write_all(pair_t *p, fo_outq_t *q, uint64_t bytes)
{
    static uint8_t scratch[FO_TLS_RECORD];
    uint64_t written = 0;
    for (long i = 0; i < 50000000; i++) {
        fo_tls_status_t st = fo_tls_write(&p->s, q, scratch, &written, NULL);
        if (st == FO_TLS_ERROR)
            fail_msg("write: %s", p->s.why);
        if (st == FO_TLS_WANT_WRITE) {
            assert_int_equal(p->s.wr_want, FO_TLS_WANT_WRITE);    /* -> EPOLLOUT */
            assert_true(p->s.stash_len > 0 && p->s.stash_len <= FO_TLS_RECORD);
            p->saw_wr_want_write = 1;
        }
        if (st == FO_TLS_WANT_READ) {
            assert_int_equal(p->s.wr_want, FO_TLS_WANT_READ);     /* -> EPOLLIN */
            p->saw_wr_want_read = 1;
        }
        client_read(p);
        size_t moved = pump(p);
        if (st == FO_TLS_OK && !moved && fo_buf_len(&p->dec.buf) >= bytes)
            break;
    }
    assert_int_equal(written, bytes);
    assert_int_equal(p->s.stash_len, 0);
    assert_null(p->s.stash);               /* idle: the stash is freed */
    assert_int_equal(q->count, 0);
}

/* ------------------------------------------------------------ tests */

static fo_tls_t *T;
static SSL_CTX *C;

static int setup(void **state)
{
    (void)state;
    fo_log_set_level(FO_LOG_WARN);
    certs = fo_tb_certs();
    if (!certs)
        return -1;
    T = make_tls("server.pem", "server.key", 0, 0);
    C = client_ctx("ca.pem", NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    SSL_CTX_free(C);
    fo_tls_destroy(T);
    return 0;
}

/* One byte at a time: the handshake (its flight does not fit: the
 * handshake -- the read side -- wants to write), then output with a
 * record kept and retried at every step. */
static void test_one_byte_transfers(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, T, C, 1, 1);
    handshake(&p);
    assert_true(p.saw_rd_want_write);
    fo_outq_t q;
    uint64_t bytes = fill_queue(&q, 600);        /* ~100 KiB, 7 records */
    write_all(&p, &q, bytes);
    assert_true(p.saw_wr_want_write);
    check_frames(&p, 600);
    assert_true(p.s.records <= bytes / FO_TLS_RECORD + 1);
    pair_free(&p);
    fo_outq_clear(&q);
}

/* Random sizes, > 1 MiB: records of at most 16 KiB, packed (about one
 * SSL_write per 16 KiB, not one per message), all in order. */
static void test_large_output_packed(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        pair_t p;
        pair_init(&p, T, C, 1 + rnd() % 20000, 0);
        handshake(&p);
        fo_outq_t q;
        enum { N = 12000 };
        uint64_t bytes = fill_queue(&q, N);
        assert_true(bytes > (1u << 20));
        uint64_t before = p.app_records;
        write_all(&p, &q, bytes);
        check_frames(&p, N);
        uint64_t full = bytes / FO_TLS_RECORD;
        assert_true(p.s.records >= full && p.s.records <= full + 1);
        assert_true(p.s.records * 50 < N);            /* far fewer writes than messages */
        assert_true(p.app_records - before >= p.s.records);
        assert_true(p.max_record <= FO_TLS_RECORD + 256);  /* the TLS limit */
        assert_true(p.big_records >= full);           /* the records are full ones */
        pair_free(&p);
        fo_outq_clear(&q);
    }
    assert_int_equal(atomic_load(&mem.used), 0);
}

/* Output queued before the handshake: the write wants to read (the
 * ClientHello), keeps its record, and goes on once the handshake moves. */
static void test_write_wants_read(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, T, C, 4096, 0);
    fo_outq_t q;
    uint64_t bytes = fill_queue(&q, 300);
    static uint8_t scratch[FO_TLS_RECORD];
    uint64_t written = 0;
    assert_int_equal(fo_tls_write(&p.s, &q, scratch, &written, NULL), FO_TLS_WANT_READ);
    assert_int_equal(p.s.wr_want, FO_TLS_WANT_READ);
    assert_true(p.s.stash_len > 0);               /* kept for the retry */
    assert_int_equal(q.bytes + p.s.stash_len, bytes);   /* counted while kept */
    for (int i = 0; i < 1000 && !SSL_is_init_finished(p.cli); i++) {
        (void)SSL_do_handshake(p.cli);
        ERR_clear_error();
        pump(&p);
        (void)fo_tls_write(&p.s, &q, scratch, &written, NULL);
        pump(&p);
    }
    write_all(&p, &q, bytes - written);
    check_frames(&p, 300);
    pair_free(&p);
    fo_outq_clear(&q);
}

/* Input: partial reads of every size; after a small read the rest of a
 * record is inside the session, where no socket shows it. */
static void test_reads_and_pending(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, T, C, 1 + rnd() % 9000, 0);
    handshake(&p);
    static uint8_t out[200000], in[200000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(rnd() >> 8);
    size_t sent = 0, got = 0, n = 0;
    int saw_pending = 0;
    for (int i = 0; i < 10000000 && got < sizeof out; i++) {
        if (sent < sizeof out) {
            size_t k = 0;
            if (!n) {                   /* a retry offers the same bytes */
                n = 1 + rnd() % 20000;
                if (n > sizeof out - sent) n = sizeof out - sent;
            }
            if (SSL_write_ex(p.cli, out + sent, n, &k) == 1) {
                sent += k;
                n = 0;
            }
            ERR_clear_error();
        }
        pump(&p);
        size_t k = 0;
        fo_tls_status_t st = fo_tls_read(&p.s, in + got, 1 + rnd() % 3000, &k);
        assert_true(st == FO_TLS_OK || st == FO_TLS_WANT_READ);
        got += k;
        if (st == FO_TLS_OK && fo_tls_pending(&p.s) && BIO_ctrl_pending(p.c_net) == 0 &&
            BIO_ctrl_pending(SSL_get_rbio(p.s.ssl)) == 0)
            saw_pending = 1;   /* input inside the session, none outside */
    }
    assert_int_equal(got, sizeof out);
    assert_memory_equal(in, out, sizeof out);
    assert_true(saw_pending);
    pair_free(&p);
}

/* A key update the client asks for in the middle of the output: the
 * server's reads answer it (OpenSSL may want to write for that, which
 * the session reports as rd_want) and the stream goes on intact. (The
 * handshake's read side wanting to write is test_one_byte_transfers.) */
static void test_key_update(void **state)
{
    (void)state;
    pair_t p;
    pair_init(&p, T, C, 64, 0);
    handshake(&p);
    assert_int_equal(SSL_key_update(p.cli, SSL_KEY_UPDATE_REQUESTED), 1);
    size_t k;
    assert_int_equal(SSL_write_ex(p.cli, "x", 1, &k), 1);     /* sends the KeyUpdate */
    pump(&p);
    pump(&p);
    /* fill the server's way out so its answering KeyUpdate cannot go */
    static uint8_t scratch[FO_TLS_RECORD];
    fo_outq_t q;
    uint64_t bytes = fill_queue(&q, 200), written = 0;
    (void)fo_tls_write(&p.s, &q, scratch, &written, NULL);
    uint8_t buf[16];
    fo_tls_status_t st = FO_TLS_OK;
    for (int i = 0; i < 100 && st != FO_TLS_WANT_WRITE; i++) {
        k = 0;
        st = fo_tls_read(&p.s, buf, sizeof buf, &k);
        move(&p, p.c_net, p.s_net, 0);      /* only client -> server */
        if (st == FO_TLS_OK)
            assert_int_equal(buf[0], 'x');
    }
    if (st == FO_TLS_WANT_WRITE)            /* depends on the OpenSSL */
        assert_int_equal(p.s.rd_want, FO_TLS_WANT_WRITE);
    write_all(&p, &q, bytes - written);
    check_frames(&p, 200);
    pair_free(&p);
    fo_outq_clear(&q);
}

/* close_notify: sent once by the server (the client reads EOF); the
 * client's is EOF for the server. */
static void test_close_notify(void **state)
{
    (void)state;
    for (int who = 0; who < 2; who++) {
        pair_t p;
        pair_init(&p, T, C, 1, 1);
        handshake(&p);
        if (who == 0) {
            fo_tls_status_t st;
            int i = 0;
            while ((st = fo_tls_shutdown(&p.s)) == FO_TLS_WANT_WRITE && i++ < 100000) {
                client_read(&p);        /* the ticket ahead of it */
                pump(&p);
            }
            assert_int_equal(st, FO_TLS_OK);
            assert_int_equal(p.s.shut, 2);
            assert_int_equal(fo_tls_shutdown(&p.s), FO_TLS_OK);     /* once */
            int e = 0;
            for (i = 0; i < 1000 && e != SSL_ERROR_ZERO_RETURN; i++) {
                pump(&p);
                char b;
                size_t k;
                if (SSL_read_ex(p.cli, &b, 1, &k) != 1)
                    e = SSL_get_error(p.cli, 0);
                ERR_clear_error();
            }
            assert_int_equal(e, SSL_ERROR_ZERO_RETURN);
        } else {
            int sent = 0;
            fo_tls_status_t st = FO_TLS_WANT_READ;
            for (int i = 0; i < 100000 && st == FO_TLS_WANT_READ; i++) {
                if (!sent)              /* a 1-byte pipe: the alert goes out in steps */
                    sent = SSL_shutdown(p.cli) >= 0;
                ERR_clear_error();
                pump(&p);
                char b;
                size_t k;
                st = fo_tls_read(&p.s, &b, 1, &k);
            }
            assert_int_equal(st, FO_TLS_EOF);
        }
        pair_free(&p);
    }
}

/* --tls-user-from: the CN, or the first DNS/email SAN, of a verified
 * client certificate; a certificate from another CA fails the handshake. */
static void test_client_certificates(void **state)
{
    (void)state;
    static const struct { int from; const char *cert; const char *user; } cases[] = {
        { FO_TLS_USER_CN, "client", "alice" },
        { FO_TLS_USER_SAN, "client", "alice.clients.test" },
        { FO_TLS_USER_OFF, "client", "" },
        { FO_TLS_USER_CN, NULL, "" },              /* optional: none sent */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fo_tls_t *t = make_tls("server.pem", "server.key", FO_TLS_VERIFY_OPTIONAL, cases[i].from);
        SSL_CTX *cc = client_ctx("ca.pem", cases[i].cert);
        pair_t p;
        pair_init(&p, t, cc, 4096, 0);
        handshake(&p);
        /* TLS 1.3: the server has the certificate once the client's flight is read */
        assert_string_equal(p.s.user, cases[i].user);
        pair_free(&p);
        SSL_CTX_free(cc);
        fo_tls_destroy(t);
    }
    fo_tls_t *t = make_tls("server.pem", "server.key", FO_TLS_VERIFY_REQUIRED, FO_TLS_USER_CN);
    const char *bad[] = { "stranger", NULL };
    for (int i = 0; i < 2; i++) {
        SSL_CTX *cc = client_ctx("ca.pem", bad[i]);
        pair_t p;
        pair_init(&p, t, cc, 4096, 0);
        fo_tls_status_t st = FO_TLS_WANT_READ;
        for (int k = 0; k < 1000 && (st == FO_TLS_WANT_READ || st == FO_TLS_WANT_WRITE); k++) {
            st = fo_tls_handshake(&p.s);
            (void)SSL_do_handshake(p.cli);
            ERR_clear_error();
            pump(&p);
        }
        assert_int_equal(st, FO_TLS_ERROR);
        assert_true(p.s.fatal);
        print_message("refused: %s\n", p.s.why);
        assert_non_null(strstr(p.s.why, "certificate"));
        pair_free(&p);
        SSL_CTX_free(cc);
    }
    fo_tls_destroy(t);
}

static void served_cn(fo_tls_t *t, char *cn, size_t len)
{
    pair_t p;
    pair_init(&p, t, C, 8192, 0);
    handshake(&p);
    X509 *x = SSL_get0_peer_certificate(p.cli);
    assert_non_null(x);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)len);
    pair_free(&p);
}

/* Startup errors are one clear line; a reload swaps the context for new
 * sessions only when it loads; open sessions keep theirs. */
static void test_context_load_and_reload(void **state)
{
    (void)state;
    static const struct { const char *cert, *key, *want; } bad[] = {
        { "nope.pem", "server.key", "--tls-cert: cannot read" },
        { "server.pem", "nope.key", "--tls-key: cannot read" },
        { "server.pem", "server2.key", "does not match the certificate in --tls-cert" },
        { "server.key", "server.key", "--tls-cert: " },
        { "server.pem", "server.pem", "holds no usable PEM private key" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fo_config_t c;
        tls_config(&c, bad[i].cert, bad[i].key, 0, 0);
        fo_tls_t *t = NULL;
        char err[512];
        assert_int_not_equal(fo_tls_create(&c, &t, err, sizeof err), FO_OK);
        assert_null(t);
        if (!strstr(err, bad[i].want) || strncmp(err, "fanoutd: ", 9) || strchr(err, '\n'))
            fail_msg("%s/%s: got \"%s\", want \"%s\"", bad[i].cert, bad[i].key, err, bad[i].want);
    }
    fo_tls_t *t = make_tls("server.pem", "server.key", 0, 0);
    pair_t open;
    pair_init(&open, t, C, 8192, 0);           /* a session on the first context */
    char cn[64];
    served_cn(t, cn, sizeof cn);
    assert_string_equal(cn, "localhost");
    fo_config_t c;
    tls_config(&c, "server2.pem", "server2.key", 0, 0);
    char err[512];
    assert_int_equal(fo_tls_reload(t, &c, err, sizeof err), FO_OK);
    assert_int_equal(fo_tls_generation(t), 1);
    served_cn(t, cn, sizeof cn);
    assert_string_equal(cn, "localhost-2");
    tls_config(&c, "server.pem", "server2.key", 0, 0);      /* broken: kept out */
    assert_int_not_equal(fo_tls_reload(t, &c, err, sizeof err), FO_OK);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(fo_tls_generation(t), 1);
    served_cn(t, cn, sizeof cn);
    assert_string_equal(cn, "localhost-2");
    handshake(&open);                          /* the old context is still alive */
    X509 *x = SSL_get0_peer_certificate(open.cli);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "localhost");
    pair_free(&open);
    fo_tls_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_byte_transfers),
        cmocka_unit_test(test_large_output_packed),
        cmocka_unit_test(test_write_wants_read),
        cmocka_unit_test(test_reads_and_pending),
        cmocka_unit_test(test_key_update),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_client_certificates),
        cmocka_unit_test(test_context_load_and_reload),
    };
    return cmocka_run_group_tests_name("tls", tests, setup, teardown);
}
