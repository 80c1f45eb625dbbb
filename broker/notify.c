/* notify.c -- sd_notify(3)'s datagram, written by hand (see notify.h). */
#include "notify.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int fo_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';             /* abstract namespace */
    /* the address length counts the name only: an abstract name's length is
     * part of the name, and a path's NUL is not needed */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t w;
    do
        w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    while (w < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return w == (ssize_t)strlen(state) ? 1 : -1;
}

void fo_notify_stopping(void)
{
    static atomic_int sent;
    if (!atomic_exchange(&sent, 1))
        (void)fo_notify("STOPPING=1\nSTATUS=draining");
}
