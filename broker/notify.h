/* notify.h -- readiness for systemd (Type=notify), without libsystemd.
 *
 * The service manager names a datagram socket in $NOTIFY_SOCKET (a path,
 * or "@name" for an abstract one); a state change is one sendto() of
 * "KEY=VALUE\n..." to it (sd_notify(3)). fanoutd sends READY=1 once its
 * listeners accept and its workers run, STOPPING=1 when a SIGTERM/SIGINT
 * drain starts, and RELOADING=1 ... READY=1 around a SIGHUP. Without
 * $NOTIFY_SOCKET nothing is sent. Any thread.
 */
#ifndef FO_NOTIFY_H
#define FO_NOTIFY_H

/* Send `state` (e.g. "READY=1\nSTATUS=listening") to $NOTIFY_SOCKET.
 * 1 sent, 0 no socket named, -1 it could not be sent (errno). */
int fo_notify(const char *state);

/* STOPPING=1, at most once per process. */
void fo_notify_stopping(void);

#endif
