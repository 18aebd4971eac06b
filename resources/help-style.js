/*
 * The help of this package's nodes in the sidebar: inline code wraps (the editor keeps it on one
 * line, which the sidebar's default width cuts), and example blocks scroll within the sidebar.
 */
(function () {
    if (document.getElementById("gw-help-style")) return;
    var style = document.createElement("style");
    style.id = "gw-help-style";
    style.textContent =
        ".gw-help code { white-space: normal; overflow-wrap: anywhere; }" +
        ".gw-help pre { white-space: pre; overflow-x: auto; word-break: normal; }";
    document.head.appendChild(style);
})();
