/* certs.c -- test certificates made with the openssl command (harness.h:
 * fo_tb_make_certs, fo_tb_certs). EC P-256 keys: fast to make. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "harness.h"

/* Run one shell command, its output to dir/openssl.log. 0 on success. */
static int sh(const char *dir, const char *fmt, const char *a, const char *b, const char *c)
{
    char cmd[2048], line[1800];
    snprintf(line, sizeof line, fmt, a, b, c);
    snprintf(cmd, sizeof cmd, "cd '%s' && { %s ; } >>openssl.log 2>&1", dir, line);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "fo_tb_make_certs: failed (%d): %s (see %s/openssl.log)\n", rc, line, dir);
    return rc == 0 ? 0 : -1;
}

#define NEWKEY "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

/* A CA: NAME.pem, NAME.key. */
static int make_ca(const char *dir, const char *name, const char *cn)
{
    return sh(dir, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                   "-keyout %s.key -out %s.pem -days 3650 -subj '/CN=%s' "
                   "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
              name, name, cn);
}

/* A leaf signed by CA.pem: NAME.pem, NAME.key; ext = the extensions file
 * (made here), days may be -1 (expired). */
static int make_leaf(const char *dir, const char *ca, const char *name, const char *cn,
                     const char *ext, int days)
{
    char extfile[300], d[16], body[1200];
    snprintf(extfile, sizeof extfile, "%s/%s.ext", dir, name);
    FILE *f = fopen(extfile, "w");
    if (!f)
        return -1;
    fputs(ext, f);
    fclose(f);
    snprintf(d, sizeof d, "%d", days);
    snprintf(body, sizeof body, NEWKEY " -keyout %s.key -out %s.csr -subj '/CN=%s'", name, name, cn);
    if (sh(dir, "%s", body, NULL, NULL))
        return -1;
    snprintf(body, sizeof body,
             "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem "
             "-days %s -extfile %s.ext",
             name, ca, ca, name, d, name);
    return sh(dir, "%s", body, NULL, NULL);
}

int fo_tb_make_certs(const char *dir)
{
    static const char server_ext[] =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    /* a cluster link is TLS both ways: one certificate for both ends */
    static const char peer_ext[] =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    static const char client_ext[] =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
        "subjectAltName=DNS:alice.clients.test,email:alice@example.test\n";
    static const char elsewhere_ext[] =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:elsewhere.test\n";
    mkdir(dir, 0700);
    if (make_ca(dir, "ca", "fanout test CA") || make_ca(dir, "other-ca", "fanout other CA") ||
        make_leaf(dir, "ca", "server", "localhost", server_ext, 30) ||
        make_leaf(dir, "ca", "server2", "localhost-2", server_ext, 30) ||
        make_leaf(dir, "ca", "expired", "localhost", server_ext, -1) ||
        make_leaf(dir, "ca", "client", "alice", client_ext, 30) ||
        /* a client certificate from a CA the broker does not trust */
        make_leaf(dir, "other-ca", "stranger", "mallory", client_ext, 30) ||
        make_leaf(dir, "ca", "peer", "fanout peer", peer_ext, 30) ||
        make_leaf(dir, "other-ca", "peer-stranger", "fanout peer", peer_ext, 30) ||
        /* a good server certificate, for a name nobody dials */
        make_leaf(dir, "ca", "elsewhere", "elsewhere.test", elsewhere_ext, 30))
        return -1;
    return sh(dir, "chmod 600 *.key && rm -f *.csr *.srl", NULL, NULL, NULL);
}

static char certs_dir[256];

static void remove_certs(void)
{
    if (!certs_dir[0])
        return;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs_dir);
    (void)!system(cmd);
    certs_dir[0] = '\0';
}

const char *fo_tb_certs(void)
{
    static int tried;
    if (tried)
        return certs_dir[0] ? certs_dir : NULL;
    tried = 1;
    char tmpl[] = "/tmp/fanout-certs-XXXXXX";
    if (!mkdtemp(tmpl))
        return NULL;
    snprintf(certs_dir, sizeof certs_dir, "%s", tmpl);
    atexit(remove_certs);
    if (fo_tb_make_certs(certs_dir)) {
        remove_certs();
        return NULL;
    }
    return certs_dir;
}

const char *fo_tb_cert(const char *name)
{
    static char path[8][320];
    static int next;
    const char *d = fo_tb_certs();
    if (!d)
        return NULL;
    char *p = path[next++ % 8];
    snprintf(p, sizeof path[0], "%s/%s", d, name);
    return p;
}
