/* Client-side callbacks of the dashboard (see dashapp/callbacks/tick.py). */
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    pipeline: {
        /* An interval tick becomes a server tick only when the server answered the last one,
         * or when that answer is overdue (config.retry_ms), so requests never pile up. */
        gate: function (nIntervals, ack, tick, config) {
            const now = Date.now();
            const retryMs = (config && config.retry_ms) || 10000;
            if (tick && ack !== tick.seq && now - tick.at < retryMs) {
                return window.dash_clientside.no_update;
            }
            return {seq: (tick ? tick.seq : 0) + 1, at: now};
        },

        /* Put alert rows new to the page on top of the grid's rows, newest first,
         * replacing rows with the same id and keeping at most config.alert_rows. */
        mergeAlerts: function (fresh, rows, config) {
            if (!fresh || !fresh.rows || fresh.rows.length === 0) {
                return window.dash_clientside.no_update;
            }
            const ids = new Set(fresh.rows.map((r) => r.alert_id));
            const kept = (rows || []).filter((r) => !ids.has(r.alert_id));
            return fresh.rows.concat(kept).slice(0, (config && config.alert_rows) || 50);
        },
    },
});
