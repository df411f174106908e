/* magestack storefront fixture script (served from pub/static). */
(function () {
    'use strict';
    var cookies = document.cookie.split('; ').reduce(function (acc, kv) {
        var i = kv.indexOf('='); acc[kv.slice(0, i)] = kv.slice(i + 1); return acc;
    }, {});
    window.magestackStorefront = { hasVary: 'X-Magento-Vary' in cookies, formKey: cookies.form_key || null };
})();
