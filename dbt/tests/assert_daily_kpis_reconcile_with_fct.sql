{{ config(meta={'dagster': {'ref': {'name': 'mart_daily_fraud_kpis'}}}) }}
-- The KPI mart loses or invents no transaction, EUR or fraud: its totals equal the fact table's.
with kpis as (
    select sum(transaction_count) as transactions, sum(fraud_count) as frauds, sum(amount_eur) as amount_eur
    from {{ ref('mart_daily_fraud_kpis') }}
),

facts as (
    select count(*) as transactions, sum(is_fraud) as frauds, sum(amount_eur) as amount_eur
    from {{ ref('fct_transactions') }}
)

select kpis.*, facts.transactions as fct_transactions, facts.frauds as fct_frauds, facts.amount_eur as fct_amount_eur
from kpis
cross join facts
where kpis.transactions <> facts.transactions
   or kpis.frauds <> facts.frauds
   or abs(kpis.amount_eur - facts.amount_eur) > 0.01
