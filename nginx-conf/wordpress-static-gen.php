<?php
/*
 * Plugin Name: static_gen tags and purges
 * Description: Tags WordPress pages for ngx_http_static_gen_module and purges them when content changes.
 *
 * A must-use plugin for nginx-conf/wordpress-php-fpm.conf: copy it to
 * wp-content/mu-plugins/static-gen.php. Optional, in wp-config.php:
 *
 *   // every front-end server's purge location (default: this machine's)
 *   define('STATIC_GEN_PURGE_URLS', 'http://10.0.0.1:8081/_static_gen/purge http://10.0.0.2:8081/_static_gen/purge');
 *   // purge by URL instead (no tags sent), for themes that show posts
 *   // outside the main query (a "recent posts" widget) and cannot tag them,
 *   // or a module without purge by tag
 *   define('STATIC_GEN_PURGE_BY', 'urls');
 *
 * Tags (X-Static-Gen-Tags; nginx keeps them with the stored page and never
 * passes the header on): `post-<ID>` for each post the main query shows,
 * `term-<ID>` for the page's term and the posts' categories and tags,
 * `posts` on every listing (home, archives). Saving a post purges
 * `?tag=post-<ID>`, so its page and exactly the listings that show it;
 * publishing, unpublishing or deleting one also purges `posts` (listings
 * shift); a comment purges its post's tag; a term its own; a theme or menu
 * change everything. A theme that shows more (a widget) adds tags with
 * static_gen_add_tags() from a 'wp' action of its own.
 *
 * By URL, a saved post or a comment purges the post's page, the home page
 * and the paginated home, category and tag archives (`/page/`,
 * `/category/`, `/tag/`); a post published or unpublished, a term changed,
 * a theme or menu change purge everything. Other archives (dates, authors)
 * keep their pages until then.
 */

if (!defined('ABSPATH')) {
    exit;
}

const STATIC_GEN_TAG_HEADER = 'X-Static-Gen-Tags';
// what the module keeps per page; a page with more tags is not stored
const STATIC_GEN_TAGS_MAX_BYTES = 16384;
// one header line per so many bytes (PHP sends each header() on its own line)
const STATIC_GEN_HEADER_LINE_BYTES = 4000;

$GLOBALS['static_gen_tags'] = [];

/** Whether this site purges by URL (STATIC_GEN_PURGE_BY 'urls') rather than by tag. */
function static_gen_by_urls()
{
    return defined('STATIC_GEN_PURGE_BY') && STATIC_GEN_PURGE_BY === 'urls';
}

/** Adds tags (strings of visible ASCII without ',', 1 to 128 bytes) to this page. */
function static_gen_add_tags(array $tags)
{
    foreach ($tags as $tag) {
        $tag = (string) $tag;
        if (preg_match('/^[\x21-\x2b\x2d-\x7e]{1,128}$/', $tag)) {
            $GLOBALS['static_gen_tags'][$tag] = true;
        } else {
            error_log("static_gen: invalid tag " . json_encode($tag) . " ignored");
        }
    }
}

/** The tags of what the main query shows. */
function static_gen_query_tags()
{
    global $wp_query;
    $tags = [];
    if (is_home() || is_archive()) {
        $tags[] = 'posts';
    }
    if (is_category() || is_tag() || is_tax()) {
        $tags[] = 'term-' . get_queried_object_id();
    }
    foreach ((array) $wp_query->posts as $post) {
        $tags[] = 'post-' . $post->ID;
        foreach (['category', 'post_tag'] as $taxonomy) {
            $terms = get_the_terms($post, $taxonomy);
            if (is_array($terms)) {
                foreach ($terms as $term) {
                    $tags[] = 'term-' . $term->term_id;
                }
            }
        }
    }
    return $tags;
}

/**
 * Sends the page's tags, in header lines of at most 4000 bytes, on pages
 * nginx may share only: GET or HEAD, nobody logged in. More than 16 KB of
 * tags: the page is sent with X-Accel-Expires: 0 (not stored), since a
 * stored page must be purged by some tag when it changes.
 */
function static_gen_send_tags()
{
    $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
    if (static_gen_by_urls() || ($method !== 'GET' && $method !== 'HEAD') || is_user_logged_in() || headers_sent()) {
        return;
    }
    static_gen_add_tags(static_gen_query_tags());
    $tags = array_keys($GLOBALS['static_gen_tags']);
    if (!$tags) {
        return;
    }
    if (strlen(implode(' ', $tags)) > STATIC_GEN_TAGS_MAX_BYTES) {
        error_log("static_gen: " . count($tags) . " tags pass 16 KB, page not stored: " . ($_SERVER['REQUEST_URI'] ?? ''));
        header('X-Accel-Expires: 0');
        return;
    }
    $line = '';
    foreach ($tags as $tag) {
        if ($line !== '' && strlen($line) + 1 + strlen($tag) > STATIC_GEN_HEADER_LINE_BYTES) {
            header(STATIC_GEN_TAG_HEADER . ': ' . $line, false);
            $line = '';
        }
        $line = $line === '' ? $tag : "$line $tag";
    }
    header(STATIC_GEN_TAG_HEADER . ': ' . $line, false);
}
// late, so that the theme's own 'wp' actions can add tags first
add_action('wp', 'static_gen_send_tags', PHP_INT_MAX);

/** The purge locations: STATIC_GEN_PURGE_URLS, or this machine's. */
function static_gen_purge_urls()
{
    $urls = defined('STATIC_GEN_PURGE_URLS') ? STATIC_GEN_PURGE_URLS : 'http://127.0.0.1/_static_gen/purge';
    return preg_split('/[\s,]+/', trim($urls), -1, PREG_SPLIT_NO_EMPTY);
}

/** Purges the pages of every listing: by tag `posts`, or everything by URL. */
function static_gen_purge_listings()
{
    static_gen_purge(static_gen_by_urls() ? [] : ['tag' => 'posts']);
}

/** Purges the pages that show a term: by its tag, or everything by URL. */
function static_gen_purge_term($term_id, $listings)
{
    if (static_gen_by_urls()) {
        static_gen_purge();
        return;
    }
    static_gen_purge(['tag' => $listings ? ['term-' . $term_id, 'posts'] : ['term-' . $term_id]]);
}

/**
 * POSTs a purge to every purge location: ['tag' => [...]], ['uri' => '/x/'],
 * ['prefix' => '/x/'], or [] for everything. One after the other, 2 s each
 * at most; a failure is logged (error_log) and never fails the save, and
 * is not retried (PHP's request is over): see nginx-conf/several-servers.conf
 * for servers that were down.
 */
function static_gen_purge(array $scope = [])
{
    $query = [];
    foreach ($scope as $key => $values) {
        foreach ((array) $values as $value) {
            $query[] = $key . '=' . rawurlencode((string) $value);
        }
    }
    $args = $query ? '?' . implode('&', $query) : '';
    foreach (static_gen_purge_urls() as $url) {
        $reply = wp_remote_post($url . $args, ['timeout' => 2]);
        if (is_wp_error($reply)) {
            error_log("static_gen: purge $args at $url failed: " . $reply->get_error_message());
        } elseif (wp_remote_retrieve_response_code($reply) != 200) {
            error_log("static_gen: purge $args at $url failed: HTTP " . wp_remote_retrieve_response_code($reply) . ' ' . wp_remote_retrieve_body($reply));
        }
    }
}

/** Purges the pages that show a post: by its tag, or by URL. */
function static_gen_purge_post($post_id, $listings)
{
    if (static_gen_by_urls()) {
        if ($listings) {
            static_gen_purge();                       // listings shift: everything
            return;
        }
        static_gen_purge(['uri' => wp_make_link_relative(get_permalink($post_id))]);
        static_gen_purge(['uri' => '/']);             // the home page
        static_gen_purge(['prefix' => '/page/']);     // its next pages
        static_gen_purge(['prefix' => '/category/']); // the archives
        static_gen_purge(['prefix' => '/tag/']);
        return;
    }
    static_gen_purge(['tag' => $listings ? ['post-' . $post_id, 'posts'] : ['post-' . $post_id]]);
}

add_action('save_post', function ($post_id) {
    if (wp_is_post_revision($post_id) || wp_is_post_autosave($post_id)) {
        return;
    }
    static_gen_purge_post($post_id, false);
});

// published or unpublished, or its date moved: the listings shift
// (save_post purges the pages that show the post itself)
add_action('transition_post_status', function ($new, $old, $post) {
    if ($new !== $old && ($new === 'publish' || $old === 'publish')) {
        static_gen_purge_listings();
    }
}, 10, 3);
add_action('post_updated', function ($post_id, $after, $before) {
    if ($after->post_status === 'publish' && $after->post_date !== $before->post_date) {
        static_gen_purge_listings();
    }
}, 10, 3);

add_action('deleted_post', function ($post_id) {
    static_gen_purge_post($post_id, true);
});

// comments: the post's page shows them, listings count them
function static_gen_purge_comment($comment_id)
{
    $comment = get_comment($comment_id);
    if ($comment) {
        static_gen_purge_post($comment->comment_post_ID, false);
    }
}
add_action('comment_post', 'static_gen_purge_comment');
add_action('edit_comment', 'static_gen_purge_comment');
add_action('wp_set_comment_status', 'static_gen_purge_comment');

add_action('edited_term', function ($term_id) {
    static_gen_purge_term($term_id, false);
});
add_action('delete_term', function ($term_id) {
    static_gen_purge_term($term_id, true);
});

// what every page shows: the whole tree
add_action('switch_theme', function () {
    static_gen_purge();
});
add_action('customize_save_after', function () {
    static_gen_purge();
});
add_action('wp_update_nav_menu', function () {
    static_gen_purge();
});
