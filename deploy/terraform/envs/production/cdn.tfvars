# terraform -chdir=deploy/terraform/stacks/cdn plan \
#   -var-file=../../envs/production/cdn.tfvars -var-file=../../envs/production/magestack-cdn.tfvars
region                          = "eu-west-1"
name                            = "magento-production"
aliases                         = ["www.shop.example.com"]
acm_certificate_arn             = "arn:aws:acm:us-east-1:222222222222:certificate/00000000-0000-0000-0000-000000000000"
origin_domain_name              = "origin.shop.example.com"
origin_verify_header_secret_arn = "arn:aws:secretsmanager:eu-west-1:222222222222:secret:magento/origin-verify"
state_bucket                    = "magento-production-terraform-state"
# The admin: its own ALB (3600 s idle timeout), reachable from the operators' networks only.
admin_domain_name = "admin.shop.example.com"
route53_zone_id   = "Z00000000000000000002"
tags = {
  environment = "production"
  managed-by  = "terraform"
}
