/*
 * router/controller/controller.h — the acting part of the controller
 * (docs/replication.md §7): the etcd election `<prefix>/controller` among
 * the routers, and, in the elected one, the loop that turns the planners'
 * actions (failover.h) into shard-entry changes.
 *
 * Threading: one thread per router runs both the campaign and, while
 * elected, the decision loop; controller_stop joins it. controller_leader
 * may be called from any thread.
 */
#ifndef VS_ROUTER_CONTROLLER_CONTROLLER_H
#define VS_ROUTER_CONTROLLER_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>

struct router;
struct controller;

/*
 * Starts campaigning as `id` (election value "<id> <addr>", lease of
 * --controller-ttl seconds). r must outlive the controller. 0, or -1 with
 * a message in err.
 */
int controller_start(struct router *r, const char *id, const char *addr, struct controller **out,
                     char *err, size_t errlen);

/* Stops acting, resigns and revokes the lease (so another router takes over
 * at once), joins the thread and frees c. NULL is a no-op. */
void controller_stop(struct controller *c);

/*
 * The id of the router holding the election into out: this router's own
 * while c leads, else the leader the routing table last saw (no etcd call,
 * so it answers during an etcd outage); "" when there is none. c is NULL
 * when --controller is off.
 */
void controller_leader(struct router *r, struct controller *c, char *out, size_t len);

/* True while c holds the election and acts on it (false for NULL). Any thread. */
bool controller_leading(struct controller *c);

#endif
