/* Xen's node permissions: owner first (with everyone's permission), then per domain. */
#include "xs.h"

bool xs_perm_parse(const char *s, struct xs_perm *p)
{
    unsigned long id;
    switch (s[0]) {
    case 'n': p->perm = XS_PERM_NONE; break;
    case 'r': p->perm = XS_PERM_READ; break;
    case 'w': p->perm = XS_PERM_WRITE; break;
    case 'b': p->perm = XS_PERM_READ | XS_PERM_WRITE; break;
    default: return false;
    }
    if (!xs_parse_uint(s + 1, 0xFFFF, &id))
        return false;
    p->domid = (uint32_t)id;
    return true;
}

char xs_perm_char(uint8_t perm)
{
    static const char c[4] = { 'n', 'r', 'w', 'b' };
    return c[perm & 3];
}

bool xs_conn_priv(const struct xs_conn *c)
{
    return c->domid == 0;
}

uint32_t xs_conn_target(const struct xs_conn *c)
{
    if (!c->is_domain)
        return XS_NO_TARGET;
    struct xs_domain *d = xs_domain_find(c->xs, c->domid);
    return d ? d->target : XS_NO_TARGET;
}

unsigned xs_perm_for(const struct xs_conn *c, const struct xs_perm *p, uint32_t n)
{
    const unsigned all = XS_PERM_READ | XS_PERM_WRITE | XS_PERM_OWNER;
    if (xs_conn_priv(c) || n == 0)
        return all;
    uint32_t target = xs_conn_target(c);
    if (p[0].domid == c->domid || (target != XS_NO_TARGET && p[0].domid == target))
        return all;
    for (uint32_t i = 1; i < n; i++)
        if (p[i].domid == c->domid || (target != XS_NO_TARGET && p[i].domid == target))
            return p[i].perm;
    return p[0].perm;
}
