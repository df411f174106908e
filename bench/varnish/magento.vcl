# Varnish configured the way Magento 2.4 configures it for its full-page cache: the anchor
# `magestack edge`'s cache is compared with (scripts/bench) and the Varnish service of
# scripts/deps. VCL 4.1 for Varnish 7.x (Debian bookworm ships 7.1).
#
# Written for magestack from the behaviour described in
# /work/shared/design/magento-fpc-contract.md (sections 1-10), in our own words: it is NOT a copy
# of Magento's app/code/Magento/PageCache/etc/varnish7.vcl (that template is under Magento's own
# licence). It follows the contract's "Decisions for magestack", so where Magento's published
# versions differ it takes:
#   - variant A's cacheability: only 200 and 404 responses that are not private are cached;
#   - the newest variant's request normalisation: the query is sorted (std.querysort) when it has
#     two or more parameters, and the marketing-parameter list is the union of both variants';
#   - PATCH is passed (newest variant), never piped;
#   - gzip for text content types and .js URLs (variant A);
#   - several Cookie headers (HTTP/2) are joined with "; " so X-Magento-Vary is read correctly
#     (Magento's VCL uses std.collect's default ", ").
#
# Values Magento substitutes into its template are the @NAME@ placeholders below; they are
# replaced by scripts/lib/varnish.sh (varnish_render):
#   @BACKEND_HOST@ @BACKEND_PORT@   the web server in front of PHP-FPM (nginx; Varnish cannot
#                                   speak FastCGI: production is Varnish -> nginx -> PHP-FPM)
#   @PURGE_ACL@                     the one address allowed to PURGE (Magento's access_list)
#   @SSL_OFFLOADED_HEADER@          web/secure/offloader_header, e.g. X-Forwarded-Proto
#   @GRACE_PERIOD@                  system/full_page_cache/varnish/grace_period, seconds (300)
# No design exceptions (theme by User-Agent) are configured.

vcl 4.1;

import std;

backend default {
    .host = "@BACKEND_HOST@";
    .port = "@BACKEND_PORT@";
    .first_byte_timeout = 600s;
    .probe = {
        .url = "/health_check.php";
        .timeout = 2s;
        .interval = 5s;
        .window = 10;
        .threshold = 5;
    }
}

acl purge {
    "@PURGE_ACL@";
}

sub vcl_recv {
    # A restart comes from vcl_hit when a stale object is too old for the grace period: fetch a
    # fresh copy instead of looking the stale one up again.
    if (req.restarts > 0) {
        set req.hash_always_miss = true;
    }

    # Same page whatever the order of its parameters (only when there are at least two).
    if (req.url ~ "\?.+&.+") {
        set req.url = std.querysort(req.url);
    }

    # Invalidation from Magento (CacheInvalidate's PurgeCache): ban by tag regex or by pool.
    if (req.method == "PURGE") {
        if (client.ip !~ purge) {
            return (synth(405, "Method not allowed"));
        }
        if (!req.http.X-Magento-Tags-Pattern && !req.http.X-Pool) {
            return (synth(400, "X-Magento-Tags-Pattern or X-Pool header required"));
        }
        if (req.http.X-Magento-Tags-Pattern) {
            ban("obj.http.X-Magento-Tags ~ " + req.http.X-Magento-Tags-Pattern);
        }
        if (req.http.X-Pool) {
            ban("obj.http.X-Pool ~ " + req.http.X-Pool);
        }
        return (synth(200, "Purged"));
    }

    # Methods Varnish does not know how to handle as HTTP requests go through as a raw tunnel.
    if (req.method != "GET" &&
        req.method != "HEAD" &&
        req.method != "PUT" &&
        req.method != "POST" &&
        req.method != "PATCH" &&
        req.method != "TRACE" &&
        req.method != "OPTIONS" &&
        req.method != "DELETE") {
        return (pipe);
    }

    # Only reads are cached.
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }

    # Customer account and checkout are personal: never cached (anywhere in the URL).
    if (req.url ~ "/customer" || req.url ~ "/checkout") {
        return (pass);
    }

    # The health check must reach PHP.
    if (req.url ~ "^/(pub/)?(health_check.php)$") {
        return (pass);
    }

    # Marker for the Grace response header on hits (set again in vcl_hit).
    set req.http.grace = "none";

    # An absolute-form request target loses its scheme.
    set req.url = regsub(req.url, "^http[s]?://", "");

    # One Cookie header even when the client sent several.
    std.collect(req.http.Cookie, "; ");

    # Marketing and tracking parameters do not change the page: drop them from the URL.
    if (req.url ~ "(\?|&)(_branch_match_id|_bta_[a-z]+|_ga|_gl|_ke|_kx|campid|ceneo_cid|clickId|cof|customid|cx|dclid|dm_i|ef_id|epik|fbclid|gad_[a-z]+|gad_source|gbraid|gclid|gclsrc|gdf[a-z]+|hsa_[a-z]+|ie|igshid|mc_[a-z]+|mk[a-z]{3}|msclkid|(mtm|matomo)_[a-z]+|origin|pcrid|p(iwi)?k_[a-z]+|redirect(_log)?_mongo_id|s_kwcid|sb_referer_host|ScCid|siteurl|snrai_[a-z]+|srsltid|tduid|trk_[a-z]+|utm_[a-z]+|wbraid|zanpid)=") {
        set req.url = regsuball(req.url, "(_branch_match_id|_bta_[a-z]+|_ga|_gl|_ke|_kx|campid|ceneo_cid|clickId|cof|customid|cx|dclid|dm_i|ef_id|epik|fbclid|gad_[a-z]+|gad_source|gbraid|gclid|gclsrc|gdf[a-z]+|hsa_[a-z]+|ie|igshid|mc_[a-z]+|mk[a-z]{3}|msclkid|(mtm|matomo)_[a-z]+|origin|pcrid|p(iwi)?k_[a-z]+|redirect(_log)?_mongo_id|s_kwcid|sb_referer_host|ScCid|siteurl|snrai_[a-z]+|srsltid|tduid|trk_[a-z]+|utm_[a-z]+|wbraid|zanpid)=[-_A-z0-9+()%.]+&?", "");
        set req.url = regsub(req.url, "[?|&]+$", "");
    }

    # Static files and media are served by the web server behind us, not cached here.
    if (req.url ~ "^/(pub/)?(media|static)/") {
        return (pass);
    }

    # A GraphQL request with a customer token but no cache id cannot be keyed: pass it.
    if (req.url ~ "/graphql" && !req.http.X-Magento-Cache-Id && req.http.Authorization ~ "^Bearer") {
        return (pass);
    }

    # Everything else is looked up, cookies or not (Varnish's own "pass when Cookie or
    # Authorization" rule never runs because this subroutine always returns).
    return (hash);
}

sub vcl_hash {
    # The customer's context (currency, group, ...) as Magento hashes it into this cookie.
    # GraphQL requests that carry a cache id use that id instead.
    if ((req.url !~ "/graphql" || !req.http.X-Magento-Cache-Id) && req.http.Cookie ~ "X-Magento-Vary=") {
        hash_data(regsub(req.http.Cookie, "^.*?X-Magento-Vary=([^;]+);*.*$", "\1"));
    }

    # http and https pages are stored apart (TLS is terminated before Varnish).
    if (req.http.@SSL_OFFLOADED_HEADER@) {
        hash_data(req.http.@SSL_OFFLOADED_HEADER@);
    }

    # (Design exceptions would add the theme chosen by User-Agent here; none configured.)

    if (req.url ~ "/graphql") {
        call magento_graphql_key;
    }
    # No return: the built-in vcl_hash then adds the URL and the Host header.
}

sub magento_graphql_key {
    if (req.http.X-Magento-Cache-Id) {
        hash_data(req.http.X-Magento-Cache-Id);
        # A logged-in customer's cache id is kept apart from a guest's with the same id.
        if (req.http.Authorization ~ "^Bearer") {
            hash_data("Authorized");
        }
    }
    if (req.http.Store) {
        hash_data(req.http.Store);
    }
    if (req.http.Content-Currency) {
        hash_data(req.http.Content-Currency);
    }
}

sub vcl_backend_response {
    # Objects stay around three days past their TTL, for vcl_hit's grace decisions.
    set beresp.grace = 3d;

    # Text may carry <esi:include> blocks (Magento's blocks with their own TTL).
    if (beresp.http.Content-Type ~ "text") {
        set beresp.do_esi = true;
    }

    # Store text and JavaScript compressed (no effect when the backend already sent gzip).
    if (bereq.url ~ "\.js$" || beresp.http.Content-Type ~ "text") {
        set beresp.do_gzip = true;
    }

    # Developer mode: keep what the backend said about caching, for debugging.
    if (beresp.http.X-Magento-Debug) {
        set beresp.http.X-Magento-Cache-Control = beresp.http.Cache-Control;
    }

    # Only 200 and 404 are cached, and never private responses. These keep their Set-Cookie.
    if ((beresp.status != 200 && beresp.status != 404) || beresp.http.Cache-Control ~ "private") {
        set beresp.uncacheable = true;
        set beresp.ttl = 86400s;
        return (deliver);
    }

    # A cacheable read never stores cookies. A response that sets X-Magento-Vary to a request
    # that had none would be stored under the wrong key: do not cache it.
    if (beresp.ttl > 0s && (bereq.method == "GET" || bereq.method == "HEAD")) {
        std.collect(beresp.http.Set-Cookie);
        if ((bereq.url !~ "/graphql" || !bereq.http.X-Magento-Cache-Id) &&
            bereq.http.Cookie !~ "X-Magento-Vary=" &&
            beresp.http.Set-Cookie ~ "X-Magento-Vary=") {
            set beresp.ttl = 0s;
            set beresp.uncacheable = true;
        }
        unset beresp.http.Set-Cookie;
    }

    # Not cacheable: remember that for two minutes (hit-for-miss), so later requests go to the
    # backend at once instead of queueing behind each other.
    if (beresp.ttl <= 0s ||
        beresp.http.Surrogate-Control ~ "no-store" ||
        (!beresp.http.Surrogate-Control && beresp.http.Cache-Control ~ "no-cache|no-store") ||
        beresp.http.Vary == "*") {
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
    }

    # GraphQL: the backend computed another cache id than the client sent: do not cache.
    if (bereq.url ~ "/graphql" && bereq.http.X-Magento-Cache-Id &&
        bereq.http.X-Magento-Cache-Id != beresp.http.X-Magento-Cache-Id) {
        set beresp.ttl = 0s;
        set beresp.uncacheable = true;
    }

    return (deliver);
}

sub vcl_hit {
    # Fresh.
    if (obj.ttl >= 0s) {
        return (deliver);
    }
    if (std.healthy(req.backend_hint)) {
        # Stale but within the grace period: serve it, Varnish refreshes it in the background.
        if (obj.ttl + @GRACE_PERIOD@s > 0s) {
            set req.http.grace = "normal (healthy server)";
            return (deliver);
        }
        # Too old: fetch it now (vcl_recv forces the miss on the restart).
        return (restart);
    }
    # Backend down: anything we still have beats an error page.
    set req.http.grace = "unlimited (unhealthy server)";
    return (deliver);
}

sub vcl_deliver {
    if (obj.uncacheable) {
        set resp.http.X-Magento-Cache-Debug = "UNCACHEABLE";
    } else if (obj.hits > 0) {
        set resp.http.X-Magento-Cache-Debug = "HIT";
        set resp.http.Grace = req.http.grace;
    } else {
        set resp.http.X-Magento-Cache-Debug = "MISS";
    }

    # Browsers must not cache pages (they are purged here, not in browsers), except private
    # responses and static files, which keep the backend's headers.
    if (resp.http.Cache-Control !~ "private" && req.url !~ "^/(pub/)?(media|static)/") {
        set resp.http.Pragma = "no-cache";
        set resp.http.Expires = "-1";
        set resp.http.Cache-Control = "no-store, no-cache, must-revalidate, max-age=0";
    }

    if (!resp.http.X-Magento-Debug) {
        unset resp.http.Age;
    }
    unset resp.http.X-Magento-Debug;
    unset resp.http.X-Magento-Tags;
    unset resp.http.X-Powered-By;
    unset resp.http.Server;
    unset resp.http.X-Varnish;
    unset resp.http.Via;
    unset resp.http.Link;
}
