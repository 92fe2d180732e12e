// Seed 000's script, verbatim except its one typo (`×tamp` → `&timestamp`). Used by the
// end-to-end test, the recipe benchmark and the script throughput example.
function (reqHeaders, reqParams, reqBody, AppKey, AesKey, AesIV, PrefixUrl, TokenUrl) {
    var ts = reqBody.get('timestamp');
    var token = token_load();
    if (!token) {
        var reqData = {
            "appKey": AppKey,
            "data": base64_encode(aes_cbc_pkcs5_encrypt(AesKey, '{"appKey": "' + AppKey + '"}', AesIV)),
            "timestamp": ts
        };
        reqData["sign"] = sha256("appKey=" + AppKey + "&data=" + reqData["data"] + "&timestamp=" + ts).toUpperCase();
        var respObj = JSON.parse(http_post_json(TokenUrl, reqData, {}));
        if (respObj["data"]["accessToken"]) {
            token = "Bearer " + respObj["data"]["accessToken"];
            token_save(token, respObj["data"]["expireTime"]);
        }
    }
    reqHeaders.set("Authorization", token);
    reqHeaders.setURI(PrefixUrl + reqHeaders.getURI());
    var originData = reqBody.get('data');
    var enData = base64_encode(aes_cbc_pkcs5_encrypt(AesKey, originData, AesIV));
    reqBody.set("appKey", AppKey);
    reqBody.set('data', enData);
    var sign = sha256(reqBody.buildSignStr()).toUpperCase();
    reqBody.set('sign', sign);
}
