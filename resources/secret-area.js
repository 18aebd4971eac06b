/*
 * Multi-line secrets (PEM keys and certificates) in a textarea. Node-RED fills the input of a kept
 * password credential with the placeholder __PWRD__, which a textarea would show as text; here the
 * area stays empty with a note instead, and an untouched area keeps the stored secret on save.
 */
(function () {
    if (window.GlueworkSecretArea) return;
    var KEPT = "__PWRD__";

    function prepare(selector, what) {
        var area = $(selector);
        var kept = area.val() === KEPT;
        area.data("gw-kept", kept).attr({ spellcheck: "false", autocomplete: "off", autocapitalize: "off" });
        if (!kept) return;
        area.val("").attr("placeholder", "kept: paste a new " + what + " to replace it");
        var clear = $('<a href="#" class="gw-secret-clear" style="margin-left: 6px">remove</a>').on("click", function (e) {
            e.preventDefault();
            area.data("gw-kept", false).attr("placeholder", "none");
            clear.remove();
        });
        area.after(clear);
    }

    /** An untouched area of a kept secret gives the editor its placeholder back, so the secret stays. */
    function save(selector) {
        var area = $(selector);
        if (area.data("gw-kept") && area.val() === "") area.val(KEPT);
    }

    /** The value a Test connection sends: the placeholder for a kept, untouched secret. */
    function value(area) {
        return area.data("gw-kept") && area.val() === "" ? KEPT : area.val();
    }

    window.GlueworkSecretArea = { prepare: prepare, save: save, value: value };
})();
